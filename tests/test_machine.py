"""The state machine as a specification: forward-only moves, final states, plans, the diagram."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import transitions

from telephony import machine
from telephony.machine import FINAL, RANK, STATES, plan
from telephony.store import CallStore

README = Path(__file__).resolve().parent.parent / "README.md"
DIAGRAM_START, DIAGRAM_END = "<!-- state-diagram -->", "<!-- /state-diagram -->"

_BEFORE_FINAL = ["new", "queued", "dialing", "ringing", "connected", "answered"]

#: Every trigger's moves, written out by hand from the contract (not read from the machine).
EXPECTED_MOVES: dict[str, dict[str, str]] = {
    "queue": {"new": "queued"},
    "dial": {"queued": "dialing"},
    "retry": {"dialing": "queued"},
    "accept": {"queued": "ringing", "dialing": "ringing"},
    "connect": {s: "connected" for s in ("new", "queued", "dialing", "ringing")},
    "answer": {s: "answered" for s in ("new", "queued", "dialing", "ringing", "connected")},
    "stop": {s: "stopped" for s in _BEFORE_FINAL},
    "fail": {s: "error" for s in _BEFORE_FINAL},
    "note": {s: s for s in STATES},
    "wait": {"queued": "queued"},
    "transfer": {"connected": "connected", "answered": "answered"},
    "send_dtmf": {"connected": "connected", "answered": "answered"},
    "warn": {"new": "connected", **{s: s for s in _BEFORE_FINAL[1:]}},
}


def all_transitions() -> list[tuple[str, str, str | None]]:
    """``(trigger, source, dest)`` of every transition the built machine holds."""
    found = []
    for trigger, event in machine.machine.events.items():
        for source, items in event.transitions.items():
            found += [(trigger, source, item.dest) for item in items]
    return found


def test_states_are_ranked_in_order() -> None:
    assert [RANK[s] for s in STATES] == list(range(len(STATES)))
    assert set(machine.machine.states) == set(STATES)
    assert sorted(machine.FINAL) == ["error", "stopped"]


def test_every_move_goes_forward_except_retry() -> None:
    backward = []
    for trigger, source, dest in all_transitions():
        if dest is None:
            continue
        if RANK[dest] <= RANK[source]:
            backward.append((trigger, source, dest))
    assert backward == [("retry", "dialing", "queued")]


@pytest.mark.parametrize("final", sorted(FINAL))
def test_final_states_are_never_left(final: str) -> None:
    leaving = {t: plan(t).moves[final] for t in machine.triggers() if plan(t).allows(final)}
    assert leaving == {"note": final}


def test_the_machine_has_exactly_the_expected_triggers() -> None:
    assert machine.triggers() == sorted(EXPECTED_MOVES)


@pytest.mark.parametrize("trigger", sorted(EXPECTED_MOVES))
def test_plan_of_each_trigger(trigger: str) -> None:
    found = plan(trigger)
    assert found.trigger == trigger
    assert found.moves == EXPECTED_MOVES[trigger]
    assert found.sources() == [s for s in STATES if s in EXPECTED_MOVES[trigger]]
    for state in STATES:
        assert found.allows(state) == (state in EXPECTED_MOVES[trigger])


def test_unknown_trigger_has_no_plan() -> None:
    with pytest.raises(KeyError, match="unknown trigger 'ring'"):
        plan("ring")


def test_mermaid_draws_every_state_but_new() -> None:
    diagram = machine.mermaid()
    lines = diagram.splitlines()
    assert lines[0] == "stateDiagram-v2"
    drawn = set(re.findall(r"\b([a-z]+)\b\s*-->|-->\s*([a-z]+)\b", diagram))
    named = {name for pair in drawn for name in pair if name}
    assert named == set(STATES) - {"new"}
    assert "new" not in re.findall(r"[a-z]+", diagram)
    # Every real move out of a non-``new`` state is an edge, labelled with its triggers.
    for trigger, moves in EXPECTED_MOVES.items():
        for source, dest in moves.items():
            if source == "new" or source == dest:
                continue
            edge = next(line for line in lines if line.startswith(f"  {source} --> {dest}:"))
            assert trigger in edge.split(": ", 1)[1].split(", ")
    assert {"  stopped --> [*]", "  error --> [*]", "  [*] --> queued"} <= set(lines)


def test_readme_shows_the_machines_diagram() -> None:
    text = README.read_text() if README.exists() else ""
    if DIAGRAM_START not in text or DIAGRAM_END not in text:
        pytest.skip(f"README.md has no {DIAGRAM_START} ... {DIAGRAM_END} section yet")
    section = text.split(DIAGRAM_START, 1)[1].split(DIAGRAM_END, 1)[0]
    block = re.search(r"```mermaid\n(.*?)\n```", section, re.DOTALL)
    assert block, "the state-diagram section has no ```mermaid block"
    assert block.group(1).strip() == machine.mermaid().strip()


def test_no_machine_is_built_after_import(
    monkeypatch: pytest.MonkeyPatch, call_store: CallStore, dialout: Any
) -> None:
    """One machine for the module: planning and applying never construct another one."""
    built = []
    original = transitions.Machine.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(transitions.Machine, "__init__", counting)
    plan.cache_clear()  # read the machine again, not just the cache
    for _ in range(50):
        for trigger in EXPECTED_MOVES:
            plan(trigger)
        machine.mermaid()
    for _ in range(20):
        call = dialout()
        for change in (call.queue(), call.dial(), call.accept(),
                       call.webhook("dialout.connected", f"c-{call.call_id}"),
                       call.webhook("dialout.stopped", f"s-{call.call_id}")):  # fmt: skip
            call_store.apply(change)
        assert call_store.state(call.call_id) == "stopped"
    assert built == []
    assert machine.machine.models == []  # a specification: no call is ever attached to it
    # The counter does see a construction (it measures, it prevents nothing).
    transitions.Machine(states=["a"], initial="a")
    assert len(built) == 1

"""The call's state machine, defined once with ``transitions`` for every call.

The machine is the *specification*: states, triggers and which states each trigger may leave.
It is never instantiated per call or per request (that costs 100–350 µs); Redis is the commit
point. :func:`plan` turns a trigger into ``(destination, allowed sources)`` from this one machine,
and the store's Lua script applies it as an atomic compare-and-set, so a transition allowed here
is the only kind that can ever reach Redis.

Forward only: every transition goes to a later state (:data:`RANK`), except ``retry``, the
worker's move from ``dialing`` back to ``queued`` when Daily refused a start outright (no call
was placed, so nothing of the call's real progress is undone).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from transitions import Machine

#: Every state, in the order a call moves through them. ``new`` exists only for the instant a
#: record is created (the first change of every call leaves it).
STATES = ("new", "queued", "dialing", "ringing", "connected", "answered", "stopped", "error")
RANK = {state: index for index, state in enumerate(STATES)}
FINAL = frozenset({"stopped", "error"})
#: What users can see: ``new`` exists only inside the atomic update that creates a call.
VISIBLE_STATES = STATES[1:]
LIVE = frozenset({"dialing", "ringing", "connected", "answered"})
_NOT_FINAL = [s for s in STATES if s not in FINAL]


def _before(state: str) -> list[str]:
    return [s for s in STATES if RANK[s] < RANK[state]]


#: Each trigger with the states it may leave; ``dest: None`` is internal (recorded, no move).
TRANSITIONS: list[dict[str, object]] = [
    {"trigger": "queue", "source": "new", "dest": "queued"},
    {"trigger": "dial", "source": "queued", "dest": "dialing"},
    {"trigger": "retry", "source": "dialing", "dest": "queued"},
    {"trigger": "accept", "source": ["queued", "dialing"], "dest": "ringing"},
    {"trigger": "connect", "source": _before("connected"), "dest": "connected"},
    {"trigger": "answer", "source": _before("answered"), "dest": "answered"},
    {"trigger": "stop", "source": _NOT_FINAL, "dest": "stopped"},
    {"trigger": "fail", "source": _NOT_FINAL, "dest": "error"},
    # Recorded on the call without moving it.
    {"trigger": "note", "source": list(STATES), "dest": None},
    {"trigger": "wait", "source": "queued", "dest": None},
    {"trigger": "transfer", "source": ["connected", "answered"], "dest": None},
    {"trigger": "send_dtmf", "source": ["connected", "answered"], "dest": None},
    # A dial-in session is first seen through any of its events; a warning proves it is up.
    {"trigger": "warn", "source": "new", "dest": "connected"},
    {"trigger": "warn", "source": _NOT_FINAL[1:], "dest": None},
]

#: The one machine for all calls: a specification, with no model of its own.
machine = Machine(
    model=None,
    states=list(STATES),
    transitions=TRANSITIONS,
    initial="new",
    auto_transitions=False,
)


@dataclass(frozen=True)
class Plan:
    """What a trigger does: where it goes from each state it may leave."""

    trigger: str
    #: state -> destination (the same state for an internal trigger)
    moves: dict[str, str]
    #: ``moves`` as the Lua script reads them, encoded once per trigger (not per event)
    moves_json: str

    def sources(self) -> list[str]:
        return list(self.moves)

    def allows(self, state: str) -> bool:
        return state in self.moves


@cache
def plan(trigger: str) -> Plan:
    """The trigger's moves, read from the machine once and cached."""
    moves: dict[str, str] = {}
    for source in STATES:
        for transition in machine.get_transitions(trigger=trigger, source=source):
            moves[source] = source if transition.dest is None else transition.dest
    if not moves:
        raise KeyError(f"unknown trigger {trigger!r}")
    return Plan(trigger, moves, json.dumps(moves, separators=(",", ":")))


def triggers() -> list[str]:
    return sorted(machine.get_triggers(*STATES))


def mermaid() -> str:
    """The state diagram, drawn from this machine (pasted into the README)."""
    lines = ["stateDiagram-v2", "  direction LR", "  [*] --> queued"]
    edges: dict[tuple[str, str], list[str]] = {}
    for trigger in triggers():
        for source, dest in plan(trigger).moves.items():
            if source == "new" or dest == source:
                continue
            edges.setdefault((source, dest), []).append(trigger)
    for (source, dest), names in sorted(
        edges.items(), key=lambda e: (RANK[e[0][0]], RANK[e[0][1]])
    ):
        lines.append(f"  {source} --> {dest}: {', '.join(names)}")
    lines += ["  stopped --> [*]", "  error --> [*]"]
    return "\n".join(lines)

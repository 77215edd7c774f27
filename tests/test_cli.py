"""The operator verbs, run as ``python -m telephony ...`` in a subprocess with the test's
environment (its Redis, key prefix and queue). No workers: calls stay queued unless a test
moves them through the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import IO, Any

import pytest
from conftest import DialOut
from rq import Queue

from telephony.cli import build_parser
from telephony.config import Settings
from telephony.dispatch import DTMF_JOB, START_JOB, TRANSFER_JOB
from telephony.record import values
from telephony.store import CallStore, Change

PHONE = "+15550100000"
VERBS = ("call", "dtmf", "stop", "transfer", "show", "watch")


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("TELEPHONY_")}
    variables.update(
        REDIS_URL=settings.redis_url or "",
        TELEPHONY_KEY_PREFIX=settings.key_prefix,
        TELEPHONY_QUEUE=settings.queue_name,
        PYTHONUNBUFFERED="1",
    )
    return variables


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "telephony", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


class Running:
    """A verb that keeps running (``watch``, ``call --wait``), read line by line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "telephony", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def stdout(self) -> IO[str]:
        assert self.process.stdout is not None
        return self.process.stdout

    def line(self) -> str:
        text = self.stdout.readline()
        assert text, f"no more output (exit {self.process.poll()})"
        return text.rstrip("\n")

    def finish(self, timeout: float = 10) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        assert "Traceback" not in err, err
        return self.process.returncode, out, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=5)


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[Any]:
    started: list[Running] = []

    def start(*args: str) -> Running:
        started.append(Running(env, *args))
        return started[-1]

    yield start
    for process in started:
        process.kill()


# --- help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([verb, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: telephony {verb}") and "--json" in out


def test_help_from_the_command_line(env: dict[str, str]) -> None:
    done = run(env, "--help")
    assert done.returncode == 0
    assert all(verb in done.stdout for verb in VERBS)


# --- call ---------------------------------------------------------------------------------------


def test_call_prints_the_id_and_queues_the_start(
    env: dict[str, str], call_store: CallStore, queue: Queue
) -> None:
    done = run(env, "call", "sales-1", "--phone", PHONE, "--ring-timeout", "20",
               "--metadata", '{"ticket": 7}', "--idempotency-key", "k-1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    call_id = done.stdout.strip()
    call = call_store.get(call_id)
    assert call is not None
    assert (call["state"], call["destination"], call["metadata"]) == (
        "queued",
        PHONE,
        {"ticket": 7},
    )
    assert call["ringTimeoutSec"] == 20
    assert [(job.func_name, job.args) for job in queue.get_jobs()] == [(START_JOB, [call_id, 1])]
    again = run(env, "call", "sales-1", "--phone", PHONE, "--ring-timeout", "20",
                "--metadata", '{"ticket": 7}', "--idempotency-key", "k-1", "--json")  # fmt: skip
    assert again.returncode == 0
    assert json.loads(again.stdout)["id"] == call_id
    assert queue.count == 1


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["r", "--phone", "555", "--ring-timeout", "0"], ["--phone", "--ring-timeout"]),
        (["no spaces", "--sip", "sip:a@b"], ["ROOM"]),
        (["r", "--sip", "sip:a@b", "--extension", "1"], ["--extension"]),
        (["r", "--phone", PHONE, "--metadata", "{nope"], ["--metadata"]),
        (["r", "--phone", PHONE, "--metadata", '"\\ud800"'], ["--metadata"]),
        (["r", "--phone", PHONE, "--metadata", "[" * 100_000], ["--metadata"]),
        (["r", "--phone", PHONE, "--idempotency-key", "a b"], ["--idempotency-key"]),
    ],
)
def test_invalid_call_names_the_options_and_exits_2(
    env: dict[str, str], queue: Queue, call_store: CallStore, args: list[str], named: list[str]
) -> None:
    done = run(env, "call", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    for option in named:
        assert f"  {option}: " in done.stderr
    assert queue.count == 0
    assert call_store.redis.zcard(call_store.keys.calls) == 0


def test_call_metadata_comes_back_exactly_as_given(
    env: dict[str, str], call_store: CallStore
) -> None:
    for given, expected in (('"123"', "123"),):  # the client's own test covers the rest
        done = run(env, "call", "sales-1", "--phone", PHONE, "--metadata", given, "--json")
        assert done.returncode == 0, done.stderr
        shown = json.loads(done.stdout)
        stored = call_store.get(shown["id"])
        assert stored is not None and shown["metadata"] == stored["metadata"] == expected


def test_call_needs_a_destination_and_redis(env: dict[str, str]) -> None:
    missing = run(env, "call", "r")
    assert missing.returncode == 2 and "--phone" in missing.stderr
    no_redis = run({**env, "REDIS_URL": ""}, "call", "r", "--phone", PHONE)
    assert no_redis.returncode == 2 and "REDIS_URL is not set" in no_redis.stderr
    down = run({**env, "REDIS_URL": "redis://127.0.0.1:1"}, "show", "x")
    assert down.returncode == 1 and "Redis is unavailable" in down.stderr


def test_call_wait_follows_the_call_until_it_ends(
    running: Any, call_store: CallStore, settings: Settings
) -> None:
    from telephony.calls import Calls

    waiting = running("call", "r", "--phone", PHONE, "--id", "call-w", "--wait")
    assert waiting.line() == "call-w"
    assert "call.queued" in waiting.line()  # caught up, so subscribed: now end it
    Calls(call_store.redis, settings, call_store).stop("call-w")
    code, out, _ = waiting.finish()
    assert code == 0
    assert "call.cancelled" in out and "queued -> stopped" in out


# --- commands on a call -------------------------------------------------------------------------


def test_stop_show_and_refused_commands(env: dict[str, str], call_store: CallStore) -> None:
    call_id = run(env, "call", "west", "--sip", "sip:agent@example.com").stdout.strip()
    dtmf = run(env, "dtmf", call_id, "12")
    assert dtmf.returncode == 1 and "cannot send DTMF" in dtmf.stderr
    bad = run(env, "dtmf", call_id, "12x", "--duration-ms", "1")
    assert bad.returncode == 2 and "  TONES: " in bad.stderr and "  --duration-ms: " in bad.stderr
    for _ in range(2):
        stop = run(env, "stop", call_id)
        assert stop.returncode == 0 and f"{call_id} is stopped (cancelled)" in stop.stdout
    shown = run(env, "show", call_id)
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[0] == f"{call_id}  dialout  stopped"
    assert "sip:agent@example.com" in shown.stdout
    assert "call.cancelled  queued -> stopped  [api]" in shown.stdout
    as_json = json.loads(run(env, "show", call_id, "--json").stdout)
    assert as_json == call_store.get(call_id)
    missing = run(env, "show", "nope")
    assert missing.returncode == 1 and "no call 'nope'" in missing.stderr


def test_transfer_and_dtmf_on_an_answered_call(
    env: dict[str, str], call_store: CallStore, commands: Queue, answered: Any
) -> None:
    call_id = answered(call_store)
    transfer = run(env, "transfer", call_id, PHONE, "--extension", "12", "--json")
    assert transfer.returncode == 0, transfer.stderr
    assert json.loads(transfer.stdout)["state"] == "answered"
    refused = run(env, "transfer", call_id, "sip:a@b", "--refer", "--caller-id", "x")
    assert refused.returncode == 2 and "  --caller-id: " in refused.stderr
    dtmf = run(env, "dtmf", call_id, "1#", "--method", "sip-info")
    assert dtmf.returncode == 0 and "DTMF 1# queued" in dtmf.stdout
    assert [job.func_name for job in commands.get_jobs()] == [TRANSFER_JOB, DTMF_JOB]


# --- watch --------------------------------------------------------------------------------------


def test_watch_catches_up_then_follows_live_and_ctrl_c_exits_0(
    running: Any, call_store: CallStore
) -> None:
    first, second = DialOut(), DialOut()
    call_store.apply(first.queue())
    call_store.apply(second.queue())
    everything = running("watch")
    one = running("watch", second.call_id, "--json")
    assert first.call_id in everything.line()
    assert second.call_id in everything.line()
    assert json.loads(one.line())["callId"] == second.call_id
    call_store.apply(
        Change(trigger="stop", event="call.cancelled", source="api", call_id=second.call_id)
    )
    live = everything.line()
    assert second.call_id in live and "call.cancelled" in live and "queued -> stopped" in live
    event = json.loads(one.line())
    assert (event["event"], event["to"]) == ("call.cancelled", "stopped")
    waiting = Change(
        trigger="wait", event="call.waiting", source="worker", call_id=first.call_id,
        data={"for": "room-legs"}, fields=values(waiting_for="room-legs"),
    )  # fmt: skip
    call_store.apply(waiting)
    line = everything.line()
    assert "call.waiting" in line and "for room-legs" in line  # why it is not dialling
    for process in (everything, one):
        process.process.send_signal(signal.SIGINT)
        code, _, err = process.finish()
        assert code == 0, err


def test_watch_after_skips_what_was_seen(running: Any, call_store: CallStore) -> None:
    calls = [DialOut() for _ in range(3)]
    seqs = [call_store.apply(call.queue()).seq for call in calls]
    watching = running("watch", "--after", str(seqs[1]), "--json")
    assert json.loads(watching.line())["seq"] == seqs[2]
    watching.process.send_signal(signal.SIGINT)
    code, out, _ = watching.finish()
    assert code == 0 and out == ""


@pytest.mark.parametrize("command", ["sandbox", "serve", "worker", "demo", "register-webhook"])
def test_service_commands_have_help(env: dict[str, str], command: str) -> None:
    """``telephony sandbox --help`` and the other service commands work from a shell."""
    done = run(env, command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: telephony {command}")


def test_a_command_imports_only_what_it_needs(env: dict[str, str]) -> None:
    """An operator's ``telephony show`` does not load the demo and the sandbox (Flask, the
    pool, granian) just to parse its options: about 0.4 s instead of 1 s a command."""
    probe = (
        "import sys; from telephony.cli import build_parser; "
        "build_parser('show').parse_args(['show', 'x']); "
        "print(sorted(m for m in ('telephony.demo', 'telephony.sandbox.server', 'flask') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    full = build_parser().parse_args(["demo", "--calls", "3"])  # every verb's options
    assert full.calls == 3

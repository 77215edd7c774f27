"""The dial-out jobs end to end: the sandbox, real Redis, the web app receiving the sandbox's
signed webhooks, and real RQ worker processes (see ``Stack`` in conftest).

Each class shares one stack (its settings differ: pacing, the live-call cap); within a class,
the calls whose outcomes only need waiting for are placed together (``batch``) so their
retries and timers run at the same time, and a background ``Observer`` records what a client
polling the call would have seen meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import DAILY_API_KEY, RawServer, Stack, events_of, moves_of, silent, wait_for

from telephony import record
from telephony.defaults import DIALOUT_LIMIT_MARGIN
from telephony.dispatch import START_JOB, job_id

pytestmark = pytest.mark.slow

ANSWER = "+15550100000"
NO_ANSWER = "+15550100001"
HANGUP = "+15550100003"
SLOW = "+15550100069"  # the start's response comes 9 s x time scale late: a read timeout
DROP = "+15550100093"
#: RQ's scheduler moves due jobs every second: a scheduled job runs up to this late.
SCHEDULER_POLL = 1.2

#: A call that ends up answered goes through these states; ``ringing`` (Daily accepted the
#: start) is skipped when the far end's ``dialout.connected`` arrives before the start returns.
ANSWERED_PATHS = (
    ["queued", "dialing", "ringing", "connected", "answered"],
    ["queued", "dialing", "connected", "answered"],
)


class Observer:
    """Samples calls every 10 ms in a thread: what a client polling ``GET /v1/calls/{id}`` saw.

    Keeps each call's distinct ``(state, attempts, nextAttemptAt, waitingFor)`` snapshots.
    """

    FIELDS = ("state", "attempts", "nextAttemptAt", "waitingFor")

    def __init__(self, stack: Stack, call_ids: Iterable[str]) -> None:
        self.stack = stack
        self.seen: dict[str, list[dict[str, Any]]] = {call_id: [] for call_id in call_ids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        store = self.stack.store
        while not self._stop.wait(0.01):
            # Every call in one round trip: under load a sample per call would stretch the
            # period past the short waits the tests look for.
            pipe = store.redis.pipeline(transaction=False)
            for call_id in self.seen:
                pipe.hgetall(store.keys.call(call_id))
            for snapshots, raw in zip(self.seen.values(), pipe.execute(), strict=True):
                if not raw:
                    continue
                call = record.decode(raw)
                snapshot = {name: call.get(name) for name in self.FIELDS}
                if not snapshots or snapshots[-1] != snapshot:
                    snapshots.append(snapshot)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def assert_saw_waiting(observer: Observer, call_id: str, why: str | None = None) -> None:
    """The call was seen ``queued`` after an attempt or a wait, with ``nextAttemptAt`` set."""
    waiting = [
        s
        for s in observer.seen[call_id]
        if s["state"] == "queued" and s["nextAttemptAt"] and (why is None or s["waitingFor"] == why)
    ]
    assert waiting, f"never seen queued with nextAttemptAt: {observer.seen[call_id]}"


def crowded_windows(times: list[float], count: int, window: float) -> list[tuple[float, float]]:
    """Pairs of start times with ``count`` others from the first up to the second, all within
    ``window``: ``count + 1`` starts in one window (checks every pair, not a grid of windows)."""
    ordered = sorted(times)
    return [
        (ordered[i], ordered[j])
        for i in range(len(ordered))
        for j in range(i + count, len(ordered))
        if ordered[j] - ordered[i] < window
    ]


def iso_seconds(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def other_client_start(stack: Stack, user_id: str, room: str = "elsewhere") -> int:
    """A dial-out started at the sandbox by someone else on the same Daily domain."""
    response = requests.post(
        f"{stack.sandbox.url}/rooms/{room}/dialOut/start",
        json={"phoneNumber": HANGUP, "userId": user_id},
        headers={"Authorization": f"Bearer {DAILY_API_KEY}"},
        timeout=5,
    )
    return response.status_code


@pytest.fixture(scope="class")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workers")


# --- one stack, no pacing in the way: outcomes, retries, ambiguity, commands ------------------


@dataclass
class Batch:
    ids: dict[str, str]
    observer: Observer


#: Scenario -> (destination, extra fields of POST /v1/calls).
BATCH: dict[str, tuple[str, dict[str, Any]]] = {
    "answered": (ANSWER, {}),
    "no_answer": (NO_ANSWER, {"ringTimeoutSec": 1}),
    "max_duration": (ANSWER, {"maxDurationSec": 1, "ringTimeoutSec": 60}),
    "rejected": ("+15550100002", {}),
    "hangup": (HANGUP, {}),
    "unavailable_400": ("+15550100042", {}),
    "unavailable_503": ("+15550100052", {}),
    "server_error": ("+15550100092", {}),
    "in_progress": ("+15550100091", {}),
    "not_allowed": ("+15550100090", {}),
    "not_hosting": (ANSWER, {"room": "not-hosting"}),
    "slow": (SLOW, {}),
    "drop": (DROP, {}),
}


class TestMain:
    @pytest.fixture(scope="class")
    @classmethod
    def main(cls, redis_url: str, logs: Path) -> Iterator[Stack]:
        with Stack(redis_url, logs, workers=3) as stack:
            yield stack

    @pytest.fixture(scope="class")
    @classmethod
    def batch(cls, main: Stack) -> Iterator[Batch]:
        ids = {
            name: main.place(destination, **fields) for name, (destination, fields) in BATCH.items()
        }
        observer = Observer(main, ids.values())
        yield Batch(ids, observer)
        observer.close()

    def test_a_finished_call_leaves_no_job_behind(self, main: Stack) -> None:
        """Once a call has ended and its jobs ran, nothing of them stays in Redis: no job
        hash, no result, no registry entry (a failure would stay, for a week)."""
        hung_up = main.place(HANGUP)
        stopped = main.place(ANSWER)
        main.wait(stopped, "answered")
        main.calls.stop(stopped)  # a stop job too
        words = [job_id(main.settings, "x", c).split("-")[2] for c in (hung_up, stopped)]

        def left() -> list[str]:
            keys = [k.decode() for k in main.redis.scan_iter(match="rq:*", count=1000)]
            found = [k for k in keys if any(w in k for w in words)]
            for key in keys:  # registries: sorted sets of job ids
                if main.redis.type(key) == b"zset":
                    members = main.redis.zrange(key, 0, -1)
                    found += [f"{key}: {m.decode()}" for m in members
                              if any(w in m.decode() for w in words)]  # fmt: skip
            return found

        for call_id in (hung_up, stopped):
            main.wait(call_id, "stopped")
        wait_for(lambda: not left(), 10, "every job of the two calls to be gone")

    def test_answered(self, main: Stack, batch: Batch) -> None:
        call_id = batch.ids["answered"]
        call = main.wait(call_id, "answered")
        assert moves_of(call) in ANSWERED_PATHS
        assert call["attempts"] == 1 and call["error"] is None
        [start] = main.starts(call_id)
        assert start["status"] == 200 and start["sessionId"] == call["sessionId"]
        assert start["destination"] == ANSWER and start["room"] == call["room"]
        assert main.session(call_id)["state"] == "answered"

    def test_ring_timeout_stops_a_call_nobody_answers(self, main: Stack, batch: Batch) -> None:
        call_id = batch.ids["no_answer"]
        call = main.wait(call_id, "stopped")
        assert call["reason"] == "no-answer"
        assert "dialout.answered" not in events_of(call)
        assert "call.no_answer" in events_of(call)
        dialed = next(e for e in call["history"] if e["event"] == "call.dialing")
        fired = next(e for e in call["history"] if e["event"] == "call.no_answer")
        assert iso_seconds(fired["at"]) - iso_seconds(dialed["at"]) >= 1.0 - 0.002
        session = main.session(call_id, "stopped")  # Daily was told to hang up
        assert [e["type"] for e in session["events"]] == ["dialout.connected", "dialout.stopped"]
        assert len(main.starts(call_id)) == 1

    def test_max_duration_ends_an_answered_call(self, main: Stack, batch: Batch) -> None:
        """Ended soon after its maximum duration, not at the (much later) ring timeout."""
        call_id = batch.ids["max_duration"]
        call = main.wait(call_id, "stopped", timeout=6)
        assert call["reason"] == "max-duration"
        assert moves_of(call)[-2:] == ["answered", "stopped"]
        assert "call.max_duration" in events_of(call)
        session = main.session(call_id, "stopped")
        assert [e["type"] for e in session["events"]][-2:] == [
            "dialout.answered",
            "dialout.stopped",
        ]

    def test_rejected_is_an_error_with_daily_message(self, main: Stack, batch: Batch) -> None:
        call_id = batch.ids["rejected"]
        call = main.wait(call_id, "error")
        assert call["error"] == "Call rejected: busy" and call["reason"] == "error"
        assert moves_of(call)[-2:] == ["connected", "error"]
        assert len(main.starts(call_id)) == 1
        assert main.session(call_id)["state"] == "error"

    def test_far_end_hangs_up(self, main: Stack, batch: Batch) -> None:
        call_id = batch.ids["hangup"]
        call = main.wait(call_id, "stopped")
        assert call["reason"] == "hangup"
        assert moves_of(call)[-2:] == ["answered", "stopped"]
        assert events_of(call)[-1] == "dialout.stopped"
        assert len(main.starts(call_id)) == 1

    @pytest.mark.parametrize(
        ("scenario", "status"), [("unavailable_400", 400), ("unavailable_503", 503)]
    )
    def test_temporarily_not_available_is_retried(
        self, main: Stack, batch: Batch, scenario: str, status: int
    ) -> None:
        call_id = batch.ids[scenario]
        call = main.wait(call_id, "answered")
        assert call["attempts"] == 3  # two refusals, then the call goes through
        assert [s["status"] for s in main.starts(call_id)] == [status, status, 200]
        retries = [e for e in call["history"] if e["event"] == "call.retry_scheduled"]
        assert [(r["data"]["status"], r["data"]["error"]) for r in retries] == [
            (status, "TemporarilyNotAvailableError")
        ] * 2
        assert all(r["data"]["delay"] > 0 for r in retries)
        assert_saw_waiting(batch.observer, call_id)
        # Between tries a poller sees the attempts made so far. Which of the two waits (0.1 to
        # 0.2 s each) a 10 ms sampler of the whole batch catches depends on the machine's load,
        # so what it saw is checked, not that it saw both.
        waiting = [
            s["attempts"]
            for s in batch.observer.seen[call_id]
            if s["state"] == "queued" and s["nextAttemptAt"]
        ]
        assert waiting and set(waiting) <= {1, 2} and waiting == sorted(waiting), waiting
        assert "nextAttemptAt" not in call  # cleared once it dialled again

    @pytest.mark.parametrize(
        ("scenario", "status", "error"),
        [("server_error", 500, "ServerError"), ("in_progress", 400, "DialoutInProgressError")],
    )
    def test_retried_until_attempts_run_out(
        self, main: Stack, batch: Batch, scenario: str, status: int, error: str
    ) -> None:
        """A 500 and DIALOUT_IN_PROGRESS are retried with backoff, within the same budget."""
        call_id = batch.ids[scenario]
        call = main.wait(call_id, "error")
        limit = main.settings.retry_max_attempts
        assert call["reason"] == "retries-exhausted" and call["attempts"] == limit
        assert [s["status"] for s in main.starts(call_id)] == [status] * limit
        assert events_of(call).count("call.retry_scheduled") == limit - 1
        assert call["history"][-1]["data"]["error"] == error
        assert_saw_waiting(batch.observer, call_id)

    @pytest.mark.parametrize(
        ("scenario", "status", "error"),
        [("not_allowed", 403, "NotAllowedError"), ("not_hosting", 404, "NotFoundError")],
    )
    def test_refused_for_good_fails_at_once(
        self, main: Stack, batch: Batch, scenario: str, status: int, error: str
    ) -> None:
        """NOT_ALLOWED and a room that is not hosting a call fail without a second start."""
        call_id = batch.ids[scenario]
        call = main.wait(call_id, "error")
        assert call["reason"] == "refused" and call["attempts"] == 1
        assert moves_of(call) == ["queued", "dialing", "error"]
        assert call["history"][-1]["data"]["error"] == error
        # No userId on a 404: found by the call's room.
        starts = [s for s in main.sandbox.starts() if s["room"] == call["room"]]
        assert [s["status"] for s in starts if s["userId"] in (call_id, None)] == [status]

    @pytest.mark.parametrize("scenario", ["slow", "drop"])
    def test_ambiguous_start_is_adopted_by_its_webhook(
        self, main: Stack, batch: Batch, scenario: str
    ) -> None:
        """The start timed out (or its connection dropped) but the call was placed: the
        webhook carrying ``user_id`` names the session, and nobody is rung twice."""
        call_id = batch.ids[scenario]
        call = main.wait(
            call_id, "answered", until=lambda c: "call.start_uncertain" in events_of(c)
        )
        [start] = main.starts(call_id)
        assert call["sessionId"] == start["sessionId"] and call["attempts"] == 1
        assert "call.start_lost" not in events_of(call)
        assert main.session(call_id)["state"] == "answered"
        uncertain = next(e for e in call["history"] if e["event"] == "call.start_uncertain")
        look = iso_seconds(uncertain["at"]) + main.settings.ambiguous_grace + SCHEDULER_POLL
        time.sleep(max(0.0, look - time.time()))  # past the watchdog's look at the call
        assert len(main.starts(call_id)) == 1
        assert main.call(call_id)["state"] == "answered"

    def test_worker_killed_mid_start_rings_once(self, main: Stack) -> None:
        """SIGKILL the worker while its start is in flight: the webhook adopts the session,
        another worker carries on, and the far end was rung exactly once."""
        call_id = main.place(SLOW)
        wait_for(lambda: main.starts(call_id), 5, "the start to reach the sandbox")
        victim = main.worker_running(job_id(main.settings, "start", call_id, 1))
        main.processes.kill(victim)
        main.workers.remove(victim)
        main.spawn_worker()
        call = main.wait(call_id, "answered")
        assert call["attempts"] == 1
        [start] = main.starts(call_id)
        assert call["sessionId"] == start["sessionId"]
        assert "call.start_uncertain" not in events_of(call)  # its worker died waiting
        # Only a call still dialing without a session is ever dialled again: this one is done.
        assert main.session(call_id)["state"] == "answered"

    def test_running_the_start_job_again_is_harmless(self, main: Stack) -> None:
        """RQ may run a job twice (a lost ack, a re-enqueue): the same attempt dials once."""
        call_id = main.place(ANSWER)
        main.calls.dispatch.enqueue_start(call_id, 1)  # the same job id again
        copies = [  # and copies under other ids, racing on the other workers
            main.calls.dispatch.queue.enqueue(
                START_JOB, call_id, 1, job_id=job_id(main.settings, "copy", call_id, copy)
            )
            for copy in range(3)
        ]
        call = main.wait(call_id, "answered")
        wait_for(
            lambda: all(job.get_status() == "finished" for job in copies),
            10,
            "every copy of the start job to finish",
        )
        assert len(main.starts(call_id)) == 1
        assert call["attempts"] == 1 and moves_of(call).count("dialing") == 1
        dialing = [e for e in call["history"] if e["event"] == "call.dialing"]
        assert all(e.get("ignored") for e in dialing[1:])  # the copies lost the race

    @pytest.mark.parametrize(
        ("destination", "state"),
        [(NO_ANSWER, "connected"), (ANSWER, "answered")],
        ids=["ringing", "answered"],
    )
    def test_stop(self, main: Stack, destination: str, state: str) -> None:
        call_id = main.place(destination)
        main.wait(call_id, state)
        main.calls.stop(call_id)
        call = main.wait(call_id, "stopped")
        assert call["reason"] == "stopped"
        assert moves_of(call)[-2:] == [state, "stopped"]
        assert "call.stop_requested" in events_of(call)
        assert main.session(call_id, "stopped")["events"][-1]["type"] == "dialout.stopped"

    def test_stop_while_the_start_is_in_flight(self, main: Stack) -> None:
        """Asked to hang up before Daily named the session: the start turns out ambiguous,
        the webhook adopts the session, and the watchdog hangs it up."""
        call_id = main.place(SLOW)
        wait_for(lambda: main.starts(call_id), 5, "the start to reach the sandbox")
        main.calls.stop(call_id)
        call = main.wait(call_id, "stopped")
        assert call["reason"] == "stopped" and call["attempts"] == 1
        assert "call.start_uncertain" in events_of(call)
        assert main.session(call_id, "stopped")["events"][-1]["type"] == "dialout.stopped"
        assert len(main.starts(call_id)) == 1

    def test_dtmf_reaches_the_session(self, main: Stack) -> None:
        call_id = main.place(ANSWER)
        main.wait(call_id, "answered")
        main.calls.send_dtmf(call_id, {"tones": "12#", "digitDurationMs": 100})
        main.calls.send_dtmf(call_id, {"tones": "*9", "method": "sip-info"})
        call = main.wait(call_id, "answered", until=lambda c: events_of(c).count("dtmf.sent") == 2)
        sent = [e["data"] for e in call["history"] if e["event"] == "dtmf.sent"]
        assert {d["tones"] for d in sent} == {"12#", "*9"}
        tones = {
            (d["tones"], d["digitDurationMs"], d["method"]) for d in main.session(call_id)["dtmf"]
        }
        assert tones == {("12#", 100, None), ("*9", None, "sip-info")}

    @pytest.mark.parametrize("refer", [False, True], ids=["sipCallTransfer", "sipRefer"])
    def test_transfer_ends_the_leg_as_transferred(self, main: Stack, refer: bool) -> None:
        call_id = main.place(ANSWER)
        main.wait(call_id, "answered")
        target = "sip:agent@example.com"
        main.calls.transfer(call_id, {"toEndPoint": target, **({"refer": True} if refer else {})})
        call = main.wait(call_id, "stopped")
        assert call["reason"] == "transferred"
        events = events_of(call)
        assert "transfer.requested" in events
        transfer_events = [e for e in call["history"] if e["event"].startswith("calltransfer.")]
        assert {e["event"] for e in transfer_events} == {
            "calltransfer.triggered",
            "calltransfer.initiated",
            "calltransfer.answered",
            "calltransfer.completed",
        }
        assert all(e["data"]["is_sip_refer"] is refer for e in transfer_events)
        assert all(e["data"]["to_endpoint"] == target for e in transfer_events)
        assert main.session(call_id)["transfers"][0]["refer"] is refer


# --- pacing: our limit equals the sandbox's, and the sandbox is the judge ---------------------

PACE_COUNT, PACE_WINDOW = 3, 1.0
BURST = 12


class TestPacing:
    @pytest.fixture(scope="class")
    @classmethod
    def paced(cls, redis_url: str, logs: Path) -> Iterator[Stack]:
        limit = f"{PACE_COUNT}/{PACE_WINDOW:g}s"
        env = {"TELEPHONY_DIALOUT_LIMIT": limit, "TELEPHONY_RETRY_MAX_ATTEMPTS": "6"}
        with Stack(redis_url, logs, workers=3, sandbox_limit=limit, env=env) as stack:
            yield stack

    def test_burst_is_paced_without_a_single_429(self, paced: Stack) -> None:
        ids = [paced.place(HANGUP) for _ in range(BURST)]
        observer = Observer(paced, ids)
        try:
            for call_id in ids:
                paced.wait(call_id, "stopped", timeout=20)
        finally:
            observer.close()
        starts = [s for s in paced.sandbox.starts() if s["userId"] in ids]
        assert [s["status"] for s in starts] == [200] * BURST  # not one 429
        assert crowded_windows([s["t"] for s in starts], PACE_COUNT, PACE_WINDOW) == []
        for call_id in ids:
            call = paced.call(call_id)
            assert call["attempts"] == 1 and call["reason"] == "hangup"
            assert "call.retry_scheduled" not in events_of(call)
            assert "waitingFor" not in call and "nextAttemptAt" not in call  # not after
        # Calls beyond the first window waited as queued, told when they would try again.
        waited = [c for c in ids if any(s["waitingFor"] for s in observer.seen[c])]
        assert len(waited) >= BURST - 2 * PACE_COUNT
        for call_id in waited:
            assert_saw_waiting(observer, call_id, "pacing")
            waits = [e for e in paced.call(call_id)["history"] if e["event"] == "call.waiting"]
            assert [e["data"]["for"] for e in waits] == ["pacing"]  # once, not once per look
            waiting = [s for s in observer.seen[call_id] if s["nextAttemptAt"]]
            assert {s["state"] for s in waiting} == {"queued"}

    def test_a_429_from_daily_is_retried(self, paced: Stack) -> None:
        """Someone else on the same Daily domain used up the window: Daily answers 429,
        which our limiter could not foresee; the start is retried with backoff."""
        # Our limiter's window is clear (so it lets the start through at once)...
        last = max((s["t"] for s in paced.sandbox.starts()), default=0.0)
        time.sleep(max(0.0, last + PACE_WINDOW + DIALOUT_LIMIT_MARGIN - time.monotonic()))
        # ...and Daily's is full.
        others = [f"other-{n}" for n in range(PACE_COUNT + 1)]
        assert 429 in [other_client_start(paced, user) for user in others]
        call_id = paced.place(HANGUP)
        call = paced.wait(call_id, "stopped")
        statuses = [s["status"] for s in paced.starts(call_id)]
        assert statuses[0] == 429 and statuses[-1] == 200
        assert call["attempts"] == len(statuses) >= 2 and call["reason"] == "hangup"
        retries = [e["data"] for e in call["history"] if e["event"] == "call.retry_scheduled"]
        assert [(r["status"], r["error"]) for r in retries] == [(429, "RateLimitedError")] * (
            len(statuses) - 1
        )


# --- the live-call cap, and a start that really placed nothing ------------------------------


class TestHundredCallBurst:
    """Issue #4's own example at a faster clock: 100 calls queued at once, Daily's limit and
    ours both 20 per second; Daily must see every start and not a single 429."""

    COUNT, WINDOW, CALLS = 20, 1.0, 100

    @pytest.fixture(scope="class")
    @classmethod
    def burst(cls, redis_url: str, logs: Path) -> Iterator[Stack]:
        limit = f"{cls.COUNT}/{cls.WINDOW:g}s"
        env = {"TELEPHONY_DIALOUT_LIMIT": limit}
        with Stack(redis_url, logs, workers=3, sandbox_limit=limit, env=env) as stack:
            yield stack

    def test_a_hundred_queued_calls_get_zero_429s(self, burst: Stack) -> None:
        ids = {burst.place(ANSWER) for _ in range(self.CALLS)}

        def answered() -> bool:  # a start is listed when it arrives, its status once answered
            done = [s for s in burst.sandbox.starts() if s["userId"] in ids and s["status"]]
            return len(done) >= self.CALLS

        wait_for(answered, 40, "every call of the burst to be started and answered")
        starts = [s for s in burst.sandbox.starts() if s["userId"] in ids]
        assert [s["status"] for s in starts] == [200] * self.CALLS  # not one 429
        assert {s["userId"] for s in starts} == ids  # each person rung exactly once
        assert crowded_windows([s["t"] for s in starts], self.COUNT, self.WINDOW) == []


class TestRoomLegs:
    """Daily's 5 legs per room: starts beyond wait (``queued``, visibly) until a leg ends."""

    @pytest.fixture(scope="class")
    @classmethod
    def legs(cls, redis_url: str, logs: Path) -> Iterator[Stack]:
        with Stack(redis_url, logs, workers=3) as stack:
            yield stack

    def test_eight_calls_in_one_room_never_exceed_five_legs(self, legs: Stack) -> None:
        room = "legs-8"
        ids = [legs.place(HANGUP, room=room) for _ in range(8)]
        observer = Observer(legs, ids)
        try:
            for call_id in ids:
                legs.wait(call_id, "stopped", timeout=20)
        finally:
            observer.close()
        assert legs.sandbox.rooms()[room]["peak"] == 5  # Daily's own count, never a sixth
        starts = [s for s in legs.sandbox.starts() if s["room"] == room]
        assert sorted(s["userId"] for s in starts) == sorted(ids)  # each dialled once
        assert {s["status"] for s in starts} == {200}  # none refused: they waited here
        waited = [c for c in ids if "call.waiting" in events_of(legs.call(c))]
        assert len(waited) == 3
        for call_id in ids:
            call = legs.call(call_id)
            assert call["reason"] == "hangup" and call["attempts"] == 1
            assert "waitingFor" not in call  # not after
        for call_id in waited:
            waits = [e for e in legs.call(call_id)["history"] if e["event"] == "call.waiting"]
            assert [e["data"]["for"] for e in waits] == ["room-legs"]  # once per wait
            assert_saw_waiting(observer, call_id, "room-legs")
            dialed = next(s["t"] for s in starts if s["userId"] == call_id)
            first_end = min(
                e["t"] for c in ids for e in legs.session(c)["events"]
                if e["type"] == "dialout.stopped"
            )  # fmt: skip
            assert dialed > first_end  # dialled only once a leg had ended

    def test_daily_refusing_a_leg_is_a_wait(self, legs: Stack) -> None:
        """Someone else holds four of the room's legs: our limiter lets two starts through,
        Daily refuses the second (a sixth leg); it waits and dials once a leg ends."""
        room = "shared"
        assert [other_client_start(legs, f"someone-{n}", room) for n in range(4)] == [200] * 4
        ids = [legs.place(HANGUP, room=room) for _ in range(2)]
        calls = [legs.wait(call_id, "stopped", timeout=20) for call_id in ids]
        assert all(c["reason"] == "hangup" and c["attempts"] == 1 for c in calls)
        refused = [c for c in calls if "call.waiting" in events_of(c)]
        assert len(refused) == 1
        [wait] = [e for e in refused[0]["history"] if e["event"] == "call.waiting"]
        assert wait["data"]["for"] == "room-legs" and wait["data"]["status"] == 400
        statuses = [s["status"] for s in legs.starts(refused[0]["id"])]
        assert statuses == [400, 200]
        assert legs.sandbox.rooms()[room]["peak"] == 5


class TestLiveCap:
    @pytest.fixture(scope="class")
    @classmethod
    def capped(cls, redis_url: str, logs: Path) -> Iterator[Stack]:
        env = {"TELEPHONY_MAX_LIVE_CALLS": "1"}
        with Stack(redis_url, logs, workers=2, env=env) as stack:
            yield stack

    def test_second_call_waits_for_the_first_to_end(self, capped: Stack) -> None:
        first = capped.place(ANSWER)
        capped.wait(first, "answered")
        second = capped.place(ANSWER)
        observer = Observer(capped, [second])
        try:
            wait_for(
                lambda: any(s["waitingFor"] == "live-cap" for s in observer.seen[second]),
                5,
                "the second call to wait for a live-call slot",
            )
            assert capped.starts(second) == []
            capped.calls.stop(first)
            capped.wait(first, "stopped")
            capped.wait(second, "answered", timeout=10)
        finally:
            observer.close()
        assert_saw_waiting(observer, second, "live-cap")
        assert {s["state"] for s in observer.seen[second] if s["nextAttemptAt"]} == {"queued"}
        ended = capped.session(first, "stopped")["events"][-1]["t"]
        [start] = capped.starts(second)
        assert start["t"] > ended  # dialled only once the first call was over
        assert capped.call(second)["attempts"] == 1
        capped.calls.stop(second)
        capped.wait(second, "stopped")

    def test_start_that_placed_nothing_is_dialled_again_after_the_grace(
        self, capped: Stack
    ) -> None:
        """The start timed out and no webhook ever names the call: after the grace window
        the watchdog concludes nothing was placed and dials again, once."""
        capped.stop_workers()
        # A server that takes requests and never answers: the start is sent, then times out,
        # and Daily never saw it (as when a proxy or the network loses it on the way).
        with RawServer(silent) as hole:
            capped.spawn_worker({"DAILY_API_URL": hole.url})
            call_id = capped.place(ANSWER)
            capped.wait(call_id, "dialing", until=lambda c: "call.start_uncertain" in events_of(c))
            sent = b"".join(request.body for request in hole.requests)
            assert call_id.encode() in sent  # the start was sent
            capped.stop_workers()
        capped.spawn_worker()
        call = capped.wait(call_id, "answered", timeout=15)
        events = events_of(call)
        assert events.index("call.start_uncertain") < events.index("call.start_lost")
        first = {e["event"]: iso_seconds(e["at"]) for e in reversed(call["history"])}
        silence = first["call.start_lost"] - first["call.start_uncertain"]
        assert silence >= capped.settings.ambiguous_grace
        assert call["attempts"] == 2
        [start] = capped.starts(call_id)  # Daily saw only the second start
        assert start["status"] == 200 and call["sessionId"] == start["sessionId"]
        capped.calls.stop(call_id)
        capped.wait(call_id, "stopped")

    def test_unsure_start_past_its_ring_timeout_ends_instead_of_hanging(
        self, capped: Stack
    ) -> None:
        """The start timed out, no webhook came, and the ring timeout passed meanwhile: the
        call ends ``stopped`` / ``no-answer`` once the grace is over (nothing was placed as
        far as anyone can know) — never stuck ``dialing``, never dialled again."""
        capped.stop_workers()
        with RawServer(silent) as hole:  # the start is sent, and lost
            capped.spawn_worker({"DAILY_API_URL": hole.url})
            call_id = capped.place(ANSWER, ringTimeoutSec=1)
            capped.wait(call_id, "dialing", until=lambda c: "call.start_uncertain" in events_of(c))
            capped.stop_workers()
        capped.spawn_worker()
        call = capped.wait(call_id, "stopped", timeout=15)
        assert call["reason"] == "no-answer" and call["attempts"] == 1
        assert "call.start_lost" not in events_of(call)
        assert capped.starts(call_id) == []  # Daily was never asked again

"""Commands on calls (telephony/calls.py): what placing a call leaves behind, idempotency
under failure, and which calls a command may touch. Real Redis; no worker runs here."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from telephony.calls import CallConflict, Calls, _digest
from telephony.config import Settings
from telephony.store import Change
from telephony.validation import call_request

REQUEST = {"room": "sales-1", "phoneNumber": "+15550100000"}


@pytest.fixture
def calls(settings: Settings, redis_client: redis.Redis) -> Calls:
    return Calls(redis_client, settings)


def test_placing_queues_the_start_and_arms_the_watchdog(calls: Calls) -> None:
    call, created = calls.place(call_request(REQUEST))
    assert created and call["state"] == "queued"
    record: dict[bytes, bytes] = calls.redis.hgetall(calls.store.keys.call(call["id"]))
    start_job = record[b"startJob"].decode()
    assert calls.dispatch.queue.job_ids == [start_job]
    scheduled = ScheduledJobRegistry(queue=calls.dispatch.queue).get_job_ids()
    assert len(scheduled) == 1 and record[b"watchDue"].decode() in scheduled[0]


def test_a_superseded_watchdog_is_deleted_and_an_ended_call_deletes_its_own(
    calls: Calls,
) -> None:
    """One watchdog job per call exists at a time: re-arming deletes the one it replaces, and
    the call's end deletes the last (nothing of it waits in Redis to run for nothing)."""
    call, _ = calls.place(call_request(REQUEST))
    call_id, registry = call["id"], ScheduledJobRegistry(queue=calls.dispatch.queue)
    [first] = registry.get_job_ids()
    calls.dispatch.schedule_watchdog(call_id, time.time() + 100, replaces=first)
    [second] = registry.get_job_ids()
    assert second != first and not calls.redis.exists(Job.key_for(first))
    assert calls.store.fields(call_id, "watch_job")["watch_job"] == second
    calls.stop(call_id)  # queued: cancelled at once
    assert calls.store.state(call_id) == "stopped"
    assert registry.get_job_ids() == [] and not calls.redis.exists(Job.key_for(second))


def test_a_re_arm_that_commits_after_the_call_ended_leaves_nothing(calls: Calls) -> None:
    """A worker re-arms from what it read while a webhook ends the call in between: the end
    removed the watchdog it knew of, and the late re-arm takes itself back; a late start
    job leaves no ``startJob`` on the ended call (the job skips when it runs)."""
    call, _ = calls.place(call_request(REQUEST))
    call_id, registry = call["id"], ScheduledJobRegistry(queue=calls.dispatch.queue)
    [first] = registry.get_job_ids()
    calls.stop(call_id)  # the end commits first...
    assert registry.get_job_ids() == []
    late = calls.dispatch.schedule_watchdog(call_id, time.time() + 100, replaces=first)
    assert registry.get_job_ids() == [] and not calls.redis.exists(Job.key_for(late))
    assert calls.store.fields(call_id, "watch_due", "watch_job") == {
        "watch_due": None, "watch_job": None,
    }  # fmt: skip
    assert calls.store.state(call_id) == "stopped"
    calls.dispatch.enqueue_start(call_id, 2, delay=5, waiting=True)  # a start's late wait
    assert calls.store.fields(call_id, "start_job") == {"start_job": None}


def test_of_two_re_arms_at_once_one_watchdog_is_left(calls: Calls) -> None:
    """A start job and the watchdog it races both re-arm from what they read: the second to
    commit deletes the one the first armed (no job waits ten minutes to run for nothing)."""
    call, _ = calls.place(call_request(REQUEST))
    call_id, registry = call["id"], ScheduledJobRegistry(queue=calls.dispatch.queue)
    [first] = registry.get_job_ids()
    by_start = calls.dispatch.schedule_watchdog(call_id, time.time() + 600, replaces=first)
    by_watchdog = calls.dispatch.schedule_watchdog(call_id, time.time() + 5, replaces=first)
    assert registry.get_job_ids() == [by_watchdog]
    assert not calls.redis.exists(Job.key_for(by_start))
    assert calls.store.fields(call_id, "watch_job")["watch_job"] == by_watchdog
    calls.stop(call_id)
    assert registry.get_job_ids() == []


def test_a_stranded_call_is_started_by_the_replay(calls: Calls) -> None:
    """The first request died between creating the call and queueing its start: the client's
    retry with the same Idempotency-Key finds it and queues the start."""
    request = call_request(REQUEST)
    key = calls.store.keys.idempotency("order-1")
    calls.redis.set(key, json.dumps({"digest": _digest(request), "callId": "stranded-1"}))
    calls.store.apply(
        Change(
            trigger="queue", event="call.queued", source="api", call_id="stranded-1",
            create={"kind": "dialout", "room": "sales-1", "options": request.dialout},
            mode="new", at="2020-01-01T00:00:00.000Z",
        )
    )  # fmt: skip
    assert calls.dispatch.queue.count == 0
    call, created = calls.place(request, idempotency_key="order-1")
    assert (call["id"], created) == ("stranded-1", False)
    assert calls.dispatch.queue.count == 1
    again, _ = calls.place(request, idempotency_key="order-1")
    assert again["id"] == "stranded-1" and calls.dispatch.queue.count == 1  # started once only


def test_a_young_call_is_not_restarted_by_a_concurrent_replay(calls: Calls) -> None:
    request = call_request(REQUEST)
    first, _ = calls.place(request, idempotency_key="order-2")
    calls.redis.hdel(calls.store.keys.call(first["id"]), "startJob")
    calls.dispatch.queue.empty()
    calls.place(request, idempotency_key="order-2")
    assert calls.dispatch.queue.count == 0  # the first request may still be queueing it


def test_a_failed_placement_frees_its_idempotency_key(
    calls: Calls, redis_url: str, key_prefix: str
) -> None:
    """Redis unreachable while placing: nothing was created, so the key must not block the
    client's retries for a day (it would get 409 "in progress" until it expires)."""
    request = call_request(REQUEST)
    key = calls.store.keys.idempotency("order-3")
    # The key is claimed and the call looked up on the real Redis, but the queue's connection
    # leads nowhere (port 1): queueing the start fails before the transaction is sent.
    nowhere = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    broken = Calls(nowhere, calls.settings)
    broken.redis = broken.store.redis = calls.redis
    with pytest.raises(redis.ConnectionError):
        broken.place(request, idempotency_key="order-3")
    assert calls.redis.exists(key) == 0 and calls.dispatch.queue.count == 0
    _, created = calls.place(request, idempotency_key="order-3")
    assert created and calls.dispatch.queue.count == 1


def test_a_placement_that_half_failed_keeps_its_key(calls: Calls) -> None:
    """A command failing inside the transaction (Redis runs the rest: no rollback) after the
    call was written: the key stays, so the client's retry finds that call and places no
    second one."""
    request = call_request({**REQUEST, "userId": "doomed-1"})
    calls.redis.set(calls.store.keys.history("doomed-1"), "not a list")
    with pytest.raises(redis.ResponseError):
        calls.place(request, idempotency_key="order-5")
    assert calls.redis.exists(calls.store.keys.idempotency("order-5")) == 1
    calls.redis.delete(calls.store.keys.history("doomed-1"))  # the damage repaired
    again, created = calls.place(request, idempotency_key="order-5")
    assert (again["id"], created) == ("doomed-1", False)


def test_a_call_id_that_is_taken_is_a_conflict_and_frees_the_key(calls: Calls) -> None:
    calls.place(call_request({**REQUEST, "userId": "mine-1"}))
    with pytest.raises(CallConflict):
        calls.place(call_request({**REQUEST, "userId": "mine-1"}), idempotency_key="k-4")
    assert calls.redis.exists(calls.store.keys.idempotency("k-4")) == 0


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("stop", ()),
        ("send_dtmf", ({"tones": "1"},)),
        ("transfer", ({"toEndPoint": "sip:a@b.example"},)),
    ],
)
def test_dialin_sessions_refuse_dialout_commands(
    calls: Calls, command: str, args: tuple[Any, ...]
) -> None:
    calls.store.apply(
        Change(
            trigger="connect", event="dialin.connected", source="webhook",
            call_id="dialin-s1", session_id="s1", create={"kind": "dialin", "room": "r"},
            mode="upsert",
        )
    )  # fmt: skip
    with pytest.raises(CallConflict, match="dial-in"):
        getattr(calls, command)("dialin-s1", *args)
    assert calls.dispatch.queue.count == 0
    assert calls.store.state("dialin-s1") == "connected"


def test_stop_of_a_finished_dialin_is_idempotent(calls: Calls) -> None:
    calls.store.apply(
        Change(
            trigger="stop", event="dialin.stopped", source="webhook", call_id="dialin-s2",
            session_id="s2", create={"kind": "dialin", "room": "r"}, mode="upsert",
        )
    )  # fmt: skip
    assert calls.stop("dialin-s2")["state"] == "stopped"


def test_a_key_claimed_by_a_request_that_died_is_taken_over(calls: Calls) -> None:
    """The first request claimed the key and died before creating anything: after the wait
    for it, the retry takes the key over and places the call (no 409 for a day)."""
    request = call_request(REQUEST)
    key = calls.store.keys.idempotency("order-6")
    calls.redis.set(key, json.dumps({"digest": _digest(request), "callId": "never-made"}))
    call, created = calls.place(request, idempotency_key="order-6")
    assert created and call["id"] != "never-made" and calls.dispatch.queue.count == 1
    again, created = calls.place(request, idempotency_key="order-6")
    assert (again["id"], created) == (call["id"], False)

"""The periodic work: the sweep takes up open dial-outs that lost their jobs, once per pool."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import Processes, wait_for
from rq import Queue
from rq.job import Job, JobStatus
from support.pool import pool_env

from telephony.calls import Calls
from telephony.config import Settings
from telephony.inbound import to_change
from telephony.validation import call_request
from workers.context import Context
from workers.watchdog import sweep


def place(calls: Calls, **fields: Any) -> str:
    request = call_request({"room": "sales-1", "phoneNumber": "+15550100001", **fields})
    call, _ = calls.place(request)
    call_id: str = call["id"]
    return call_id


def watchdog_job(calls: Calls, call_id: str) -> Job | None:
    due = calls.redis.hget(calls.store.keys.call(call_id), "watchDue")
    name = calls.dispatch.watchdog_id(call_id, due) if due else ""
    return Job.fetch(name, connection=calls.redis, serializer=calls.dispatch.queue.serializer)


@pytest.fixture
def ctx(settings: Settings, queue: Queue) -> Context:
    """A worker's context on the test's prefix; no worker runs, so jobs stay where they are."""
    return Context.build(settings)


def test_the_sweep_rearms_calls_that_lost_their_jobs(ctx: Context) -> None:
    calls = ctx.calls
    looked_after, lost_watchdog, lost_start = (place(calls) for _ in range(3))
    assert sweep(ctx) == {"open": 3, "rearmed": 0, "armed": 0, "forgotten": 0}

    first = watchdog_job(calls, lost_watchdog)
    assert first is not None
    first.delete()
    start = calls.redis.hget(calls.store.keys.call(lost_start), "startJob").decode()
    Job.fetch(start, connection=calls.redis, serializer=calls.dispatch.queue.serializer).delete()

    assert sweep(ctx) == {"open": 3, "rearmed": 2, "armed": 0, "forgotten": 0}
    for call_id in (lost_watchdog, lost_start):  # a watchdog due now takes them up
        job = watchdog_job(calls, call_id)
        assert job is not None and job.get_status() in (JobStatus.SCHEDULED, JobStatus.QUEUED)
    # No worker runs here: the start stays missing until that watchdog queues it.
    assert sweep(ctx)["rearmed"] == 1

    # Ended calls leave the index with their end; one whose record vanished, at the sweep.
    calls.stop(looked_after)
    calls.redis.delete(calls.store.keys.call(lost_watchdog))
    assert sweep(ctx) == {"open": 1, "rearmed": 1, "armed": 0, "forgotten": 1}
    assert calls.redis.zrange(calls.store.keys.open, 0, -1) == [lost_start.encode()]


@pytest.mark.slow
def test_a_call_whose_watchdog_was_deleted_still_ends_at_its_ring_timeout(
    redis_url: str,
    settings: Settings,
    redis_client: redis.Redis,
    sandbox: Any,
    tmp_path: Path,
) -> None:
    env = pool_env(
        redis_url,
        settings.key_prefix,
        settings.queue_name,
        DAILY_API_URL=sandbox.url,
        TELEPHONY_SWEEP_INTERVAL="1",
    )
    calls = Calls(redis_client, settings)
    processes = Processes(env, tmp_path)
    pool = processes.running[processes.spawn(["-m", "telephony", "worker", "-n", "1"], "pool")]
    try:
        call_id = place(calls, ringTimeoutSec=4)  # rings until stopped
        wait_for(lambda: calls.store.state(call_id) == "ringing", 10, "Daily to take the call")
        job = wait_for(lambda: watchdog_job(calls, call_id), 5, "the ring timeout's watchdog")
        job.delete()  # lost, as with a Redis that came back without its last writes

        def ended() -> bool:
            return calls.store.state(call_id) == "stopped"

        wait_for(ended, 15, "the call to end at its ring timeout")
        call = calls.store.get(call_id)
        assert call is not None and call["reason"] == "no-answer"
        assert "sweep: 1 of 1 open calls had lost their jobs" in processes.logs()
    finally:
        processes.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pool.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_dialin_session_whose_end_was_never_reported_ends_at_its_ceiling(
    redis_url: str, settings: Settings, redis_client: redis.Redis, sandbox: Any, tmp_path: Path
) -> None:
    """A dial-in session is created by its webhook; if the webhook that ends it is lost, the
    sweep arms its watchdog and the session ends at TELEPHONY_DIALIN_MAX_DURATION."""
    env = pool_env(redis_url, settings.key_prefix, settings.queue_name,
                   DAILY_API_URL=sandbox.url, TELEPHONY_SWEEP_INTERVAL="0.5",
                   TELEPHONY_DIALIN_MAX_DURATION="2")  # fmt: skip
    store = Calls(redis_client, settings).store
    envelope = {"type": "dialin.connected", "id": "evt-in", "payload": {
        "session_id": "in-1", "room": "r", "sip_from": "sip:a@b"}}  # fmt: skip
    change = to_change(envelope)
    assert change is not None and store.apply(change).status == "applied"
    processes = Processes(env, tmp_path)
    processes.spawn(["-m", "telephony", "worker", "-n", "1"], "pool")
    try:
        wait_for(lambda: store.state("dialin-in-1") == "stopped", 15, "the dial-in's ceiling")
        call = store.get("dialin-in-1")
        assert call is not None and call["reason"] == "max-duration"
        assert [e["event"] for e in call["history"]][-2:] == ["call.max_duration", "call.stopped"]
    finally:
        processes.close()

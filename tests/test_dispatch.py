"""The command lane: a stop is never stuck behind a campaign's starts."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import WEBHOOK_SECRET, DialOut, Processes, answered_call, wait_for
from support.pool import pool_env
from support.servers import granian

from telephony.calls import Calls
from telephony.config import RateLimit, Settings
from telephony.sandbox.server import Sandbox
from telephony.store import unix_time
from telephony.validation import call_request

ANSWER, SLOW = "+15550100000", "+15550100063"  # SLOW: Daily answers its start after 3 s


@pytest.mark.slow
def test_a_stop_reaches_daily_within_a_second_behind_a_backlog_of_slow_starts(
    settings: Settings, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Two workers busy for seconds with slow starts, six more starts queued behind them: the
    stop of an answered call reaches Daily within a second, long before the backlog drains."""
    with Sandbox(api_key=settings.daily_api_key.reveal(), rate_limit=RateLimit(1000, 1.0)) as sb, \
            granian(settings) as web:  # fmt: skip
        sb.register_webhook(f"{web}/webhooks/daily", WEBHOOK_SECRET)
        env = pool_env(redis_url, settings.key_prefix, settings.queue_name,
                       DAILY_API_URL=sb.url, TELEPHONY_DIALOUT_LIMIT="1000/1s")  # fmt: skip
        processes = Processes(env, tmp_path)
        processes.spawn(["-m", "telephony", "worker", "-n", "2"], "pool")
        calls = Calls(redis_client, settings)

        def place(number: str) -> str:
            room = f"r-{uuid.uuid4().hex[:8]}"  # one room each: Daily allows 5 legs in one
            call, _ = calls.place(call_request({"room": room, "phoneNumber": number}))
            return str(call["id"])

        try:
            live = place(ANSWER)
            wait_for(lambda: calls.store.state(live) == "answered", 15, "the call to answer")
            backlog = [place(SLOW) for _ in range(8)]
            wait_for(lambda: len(sb.starts()) >= 3, 5, "the workers to be busy starting")
            asked = time.time()
            calls.stop(live)

            def stopped_at() -> Any:
                hits = [e for e in sb.core.api_log.page({"source": "api", "limit": "100"})["data"]
                        if "dialOut/stop" in e["url"]]  # fmt: skip
                return hits and unix_time(hits[0]["createdAt"])

            reached = wait_for(stopped_at, 10, "the stop to reach Daily")
            started = {s["userId"] for s in sb.starts()} & set(backlog)
            assert reached - asked < 1.0, f"the stop took {reached - asked:.2f} s"
            assert len(started) < len(backlog)  # the starts were still queued
            wait_for(lambda: calls.store.state(live) == "stopped", 5, "the call to end")
            assert calls.store.get(live)["reason"] == "stopped"  # type: ignore[index]

            ghost = answered_call(calls.store)  # a session Daily does not know (any more)
            calls.send_dtmf(ghost, {"tones": "5"})
            [why] = wait_for(lambda: failures(calls, ghost), 10, "Daily's refusal recorded")
            assert why["why"] == "Daily refused it" and why["status"] == 404
        finally:
            processes.close()


def failures(calls: Calls, call_id: str) -> list[dict[str, Any]]:
    record = calls.store.get(call_id)
    assert record is not None
    return [e["data"] for e in record["history"] if e["event"] == "dtmf.failed"]


@pytest.mark.slow
def test_a_command_that_does_not_reach_daily_is_recorded_with_why(
    settings: Settings, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """No silent command: one for a call that ended first, and one whose retries ran out
    (Daily unreachable: connection refused, retryable), each leave dtmf.failed with why."""
    from rq import Retry
    from support.pool import pool_env as env_of

    from telephony.dispatch import DTMF_JOB
    from telephony.redis_server import free_port

    calls = Calls(redis_client, settings)
    ended, unreachable = answered_call(calls.store), answered_call(calls.store)
    calls.store.apply(DialOut(call_id=ended).webhook("dialout.stopped", f"e-{ended}"))
    env = env_of(redis_url, settings.key_prefix, settings.queue_name,
                 DAILY_API_URL=f"http://127.0.0.1:{free_port()}/v1")  # fmt: skip
    processes = Processes(env, tmp_path)
    tones = {"tones": "1"}
    calls.dispatch.enqueue_command(DTMF_JOB, "dtmf", ended, tones)  # queued before it ended
    calls.dispatch.commands.enqueue(DTMF_JOB, unreachable, tones,
                                    retry=Retry(max=1, interval=0))  # fmt: skip
    processes.spawn(["-m", "telephony", "worker", "-n", "1"], "pool")
    try:
        [why] = wait_for(lambda: failures(calls, ended), 10, "the first fate")
        assert why == {**tones, "why": "the call ended first"}
        [why] = wait_for(lambda: failures(calls, unreachable), 15, "the retries to run out")
        assert why["why"] == "retries exhausted" and why["tones"] == "1"
        assert calls.store.state(unreachable) == "answered"
    finally:
        processes.close()


@pytest.mark.slow
def test_a_failed_job_is_kept_for_a_week_and_no_longer(
    settings: Settings, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A job that fails (here a start that finds its call's record unreadable) stays for an
    operator to look at, with its error, for JOB_FAILURE_TTL, not for good."""
    from rq.job import Job
    from support.pool import pool_env as env_of

    from telephony import defaults

    calls = Calls(redis_client, settings)
    call, _ = calls.place(call_request({"room": "r-fail", "phoneNumber": ANSWER}))
    start = str(calls.store.fields(call["id"], "start_job")["start_job"])
    redis_client.hset(calls.store.keys.call(call["id"]), "metadata", "not json")
    processes = Processes(env_of(redis_url, settings.key_prefix, settings.queue_name), tmp_path)
    processes.spawn(["-m", "telephony", "worker", "-n", "1"], "pool")
    try:
        failed = calls.dispatch.queue.failed_job_registry
        wait_for(lambda: start in failed.get_job_ids(), 15, "the start to fail")
        ttl = redis_client.ttl(Job.key_for(start))
        assert defaults.JOB_FAILURE_TTL - 60 < ttl <= defaults.JOB_FAILURE_TTL
        [result] = [k for k in redis_client.scan_iter(match=f"rq:results:{start}*")]
        assert 0 < redis_client.ttl(result) <= defaults.JOB_FAILURE_TTL
    finally:
        processes.close()

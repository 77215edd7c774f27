"""Daily's webhook watched: FAILED is re-activated and recorded; missing is said loudly."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from conftest import WEBHOOK_SECRET, Processes, wait_for
from support.pool import pool_env
from werkzeug.wrappers import Request, Response

from telephony import webhook_health
from telephony.config import Settings
from telephony.daily import DailyClient
from telephony.serving import ServerThread
from telephony.store import CallStore


class Endpoint:
    """A webhook endpoint that answers Daily's test request 200 and events 200, or 500 while
    ``failing`` is set (a deploy gone wrong, as far as Daily can tell)."""

    def __init__(self) -> None:
        self.failing = threading.Event()
        self.server = ServerThread(self._app).start()
        self.url = f"{self.server.url}/webhooks/daily"

    def _app(self, environ: Any, start_response: Any) -> Any:
        body = Request(environ).get_json(silent=True) or {}
        failed = self.failing.is_set() and "type" in body
        return Response(status=500 if failed else 200)(environ, start_response)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    found = Endpoint()
    yield found
    found.server.stop()


@pytest.fixture
def daily(sandbox: Any) -> Iterator[DailyClient]:
    with DailyClient(sandbox.url, sandbox.api_key) as client:
        yield client


def trip_the_breaker(daily: DailyClient, endpoint: Endpoint, sandbox: Any) -> None:
    """Three failed deliveries (a call that connects, answers and hangs up): ``FAILED``."""
    endpoint.failing.set()
    daily.start_dialout("sales-1", {"phoneNumber": "+15550100003", "userId": "u-breaker"})
    wait_for(lambda: sandbox.webhooks()[0]["state"] == "FAILED", 10, "the breaker to trip")
    endpoint.failing.clear()


def reactivations(store: CallStore) -> list[dict[str, Any]]:
    feed = store.feed(after=0, limit=500)
    return [e for e in feed if e["event"] == "webhook.reactivated"]


def test_a_failed_webhook_is_reactivated_and_recorded(
    sandbox: Any, daily: DailyClient, endpoint: Endpoint, call_store: CallStore
) -> None:
    assert webhook_health.check(call_store, daily) == {"status": "unregistered"}
    webhook_health.remember(call_store, daily.ensure_webhook(endpoint.url, WEBHOOK_SECRET))
    assert webhook_health.check(call_store, daily)["status"] == "active"

    trip_the_breaker(daily, endpoint, sandbox)
    found = webhook_health.check(call_store, daily)
    assert found["status"] == "reactivated" and found["state"] == "FAILED"
    assert sandbox.webhooks()[0]["state"] == "ACTIVE"
    [event] = reactivations(call_store)
    assert event["data"]["url"] == endpoint.url and event["data"]["downSec"] >= 0
    assert event["callId"] is None and event["source"] == "service"
    metrics = call_store.redis.hgetall(call_store.keys.metrics)
    assert metrics[b"webhook_reactivated"] == b"1"
    assert webhook_health.check(call_store, daily)["status"] == "active"  # once, not again


def test_a_missing_webhook_is_said_loudly_and_not_replaced(
    sandbox: Any, daily: DailyClient, endpoint: Endpoint, call_store: CallStore, web: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    hook = daily.ensure_webhook(endpoint.url, WEBHOOK_SECRET)
    webhook_health.remember(call_store, hook)
    daily.delete_webhook(hook["uuid"])
    found = webhook_health.check(call_store, daily)
    assert found["status"] == "missing" and endpoint.url in found["problem"]
    assert sandbox.webhooks() == []  # nothing was created or overwritten
    assert any("register-webhook" in r.getMessage() for r in caplog.records)
    ready = requests.get(f"{web}/readyz", timeout=5).json()
    assert ready["status"] == "degraded" and ready["webhook"]["status"] == "missing"


@pytest.mark.slow
def test_the_pool_reactivates_a_failed_webhook_within_its_interval(
    sandbox: Any, daily: DailyClient, endpoint: Endpoint, settings: Settings,
    redis_url: str, redis_client: redis.Redis, tmp_path: Path,
) -> None:  # fmt: skip
    store = CallStore(redis_client, settings)
    webhook_health.remember(store, daily.ensure_webhook(endpoint.url, WEBHOOK_SECRET))
    env = pool_env(redis_url, settings.key_prefix, settings.queue_name,
                   DAILY_API_URL=sandbox.url, TELEPHONY_WEBHOOK_CHECK_INTERVAL="1")  # fmt: skip
    processes = Processes(env, tmp_path)
    processes.spawn(["-m", "telephony", "worker", "-n", "1"], "pool")
    try:
        trip_the_breaker(daily, endpoint, sandbox)
        wait_for(lambda: sandbox.webhooks()[0]["state"] == "ACTIVE", 6, "re-activation")
        wait_for(lambda: reactivations(store), 2, "webhook.reactivated on the feed")
    finally:
        processes.close()


def test_register_webhook_asks_for_exponential_retries_and_is_watched(
    sandbox: Any, settings: Settings, redis_url: str, call_store: CallStore, endpoint: Endpoint,
) -> None:  # fmt: skip
    env = {**os.environ, "REDIS_URL": redis_url, "DAILY_API_URL": sandbox.url,
           "DAILY_API_KEY": sandbox.api_key, "DAILY_WEBHOOK_SECRET": WEBHOOK_SECRET,
           "TELEPHONY_KEY_PREFIX": settings.key_prefix}  # fmt: skip
    for _ in range(2):  # idempotent
        done = subprocess.run(
            [sys.executable, "-m", "telephony", "register-webhook", endpoint.url],
            env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    [hook] = sandbox.webhooks()
    assert (hook["url"], hook["state"]) == (endpoint.url, "ACTIVE")
    assert hook["retryType"] == "exponential"
    assert webhook_health.status(call_store)["uuid"] == hook["uuid"]


def test_what_daily_failed_to_deliver_is_replayed_from_its_log_once(
    sandbox: Any, daily: DailyClient, endpoint: Endpoint, call_store: CallStore
) -> None:
    from conftest import DialOut

    webhook_health.remember(call_store, daily.ensure_webhook(endpoint.url, WEBHOOK_SECRET))
    assert webhook_health.check(call_store, daily)["status"] == "active"
    endpoint.failing.set()  # every delivery fails: the breaker trips on this call's 3 events
    call = DialOut(call_id="c-replay")
    call.session_id = daily.start_dialout(
        "sales-1", {"phoneNumber": "+15550100003", "userId": call.call_id}
    )
    for change in (call.queue(), call.dial(), call.accept()):
        call_store.apply(change)
    wait_for(lambda: sandbox.webhooks()[0]["state"] == "FAILED", 10, "the breaker to trip")
    endpoint.failing.clear()
    assert call_store.state(call.call_id) == "ringing"  # nothing arrived

    found = webhook_health.check(call_store, daily)
    assert found["status"] == "reactivated" and found["replayed"] == {"applied": 3}
    record = call_store.get(call.call_id)
    assert record is not None and record["state"] == "stopped"
    learned = [e for e in record["history"] if e["source"] == "log"]
    assert [e["event"] for e in learned] == [
        "dialout.connected", "dialout.answered", "dialout.stopped"
    ]  # fmt: skip
    assert webhook_health.check(call_store, daily)["replayed"] == {}  # the log is read once

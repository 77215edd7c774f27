"""The webhook spool: what Redis cannot take while it is away is journalled, answered 200, and
applied once, in arrival order, when it is back: by the same process or by the next one."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from conftest import DialOut, wait_for
from support.servers import Granian

from telephony.config import Settings
from telephony.inbound import Unavailable
from telephony.redis_server import RedisServer
from telephony.spool import Spool
from telephony.store import CallStore
from telephony.web.context import Services

EVENTS = ["dialout.connected", "dialout.answered", *["dialout.warning"] * 7, "dialout.stopped"]


def live_calls(store: CallStore, count: int) -> list[DialOut]:
    """Dial-outs Daily has accepted (``ringing``), as the API and a worker leave them."""
    calls = [DialOut() for _ in range(count)]
    for call in calls:
        for change in (call.queue(), call.dial(), call.accept()):
            store.apply(change)
    return calls


def lifecycles(calls: list[DialOut]) -> list[tuple[DialOut, str, bytes]]:
    """Each call's whole life in webhooks (10 each), the calls interleaved: (call, id, body)."""
    return [
        (call, f"evt-{call.call_id}-{n}", call.envelope(kind, f"evt-{call.call_id}-{n}"))
        for n, kind in enumerate(EVENTS)
        for call in calls
    ]


def applied_in_order(store: CallStore, sent: list[tuple[DialOut, str, bytes]]) -> bool:
    """Whether every call's history holds its webhooks once each, in the order they were sent,
    all applied (none ignored as a backward move)."""
    for call in {id(c): c for c, _, _ in sent}.values():
        record = store.get(call.call_id)
        assert record is not None
        got = [(e["eventId"], e.get("ignored", False)) for e in record["history"] if "eventId" in e]
        wanted = [(event_id, False) for c, event_id, _ in sent if c is call]
        if got != wanted:
            assert len(got) < len(wanted), f"{call.call_id}: {got}"  # not done yet, or wrong
            return False
    return True


def webhooks_on_the_feed(store: CallStore) -> Counter[tuple[str, str]]:
    """(call id, event) of every webhook the durable feed shows."""
    feed = store.feed(after=0, limit=500)
    return Counter((e["callId"], e["event"]) for e in feed if e["source"] == "webhook")


def sent_webhooks(sent: list[tuple[DialOut, str, bytes]]) -> Counter[tuple[str, str]]:
    return Counter((call.call_id, json.loads(body)["type"]) for call, _, body in sent)


@pytest.fixture
def private(settings: Settings, own_redis: RedisServer) -> Settings:
    """The test's settings on a Redis of its own, which it stops and starts."""
    return dataclasses.replace(settings, redis_url=own_redis.url)


def test_webhooks_spooled_while_redis_is_away_are_applied_in_order(
    private: Settings, own_redis: RedisServer, sign_webhook: Any
) -> None:
    services = Services.build(private)
    calls = live_calls(services.store, 5)
    sent = lifecycles(calls)
    own_redis.stop()
    for _, _, body in sent:
        headers = sign_webhook(body)
        began = time.monotonic()
        outcome = services.receiver.receive(body, headers["X-Webhook-Timestamp"],
                                            headers["X-Webhook-Signature"])  # fmt: skip
        assert outcome is not None and outcome.status == "spooled"
        assert time.monotonic() - began < 1.0
    assert services.receiver.spool is not None
    assert services.receiver.spool.stats()["entries"] == 50
    journal = list(Path(private.spool_dir).glob("*.journal"))
    assert len(journal) == 1 and len(journal[0].read_bytes().splitlines()) == 50

    own_redis.start()
    wait_for(lambda: applied_in_order(services.store, sent), 5, "every webhook, in order")
    wait_for(lambda: services.receiver.spool.stats()["entries"] == 0, 5, "the spool to empty")
    assert journal[0].stat().st_size == 0  # caught up: the journal starts afresh
    assert all(services.store.state(c.call_id) == "stopped" for c in calls)
    assert webhooks_on_the_feed(services.store) == sent_webhooks(sent)


def test_a_full_spool_answers_503_and_keeps_what_it_took(
    private: Settings, own_redis: RedisServer, sign_webhook: Any
) -> None:
    services = Services.build(private)
    [call] = live_calls(services.store, 1)
    sent = lifecycles([call])
    receiver = services.receiver
    size = len(json.dumps(json.loads(sent[0][2]), separators=(",", ":"))) + 1
    receiver.spool = Spool(private.spool_dir, receiver.apply, max_bytes=3 * size + 10)
    own_redis.stop()
    answers = []
    for _, _, body in sent[:5]:
        headers = sign_webhook(body)
        try:
            outcome = receiver.receive(body, headers["X-Webhook-Timestamp"],
                                       headers["X-Webhook-Signature"])  # fmt: skip
            answers.append(outcome.status if outcome else "test")
        except Unavailable as exc:
            answers.append(exc.status)
    assert answers == ["spooled", "spooled", "spooled", 503, 503]
    assert receiver.spool.stats()["refused"] == 2
    own_redis.start()
    wait_for(lambda: applied_in_order(services.store, sent[:3]), 5, "what the spool took")


@pytest.mark.slow
def test_a_killed_web_process_loses_no_spooled_webhook(
    private: Settings, own_redis: RedisServer, sign_webhook: Any
) -> None:
    """Redis stops; 50 webhooks are answered 200 by a real server, which is then SIGKILLed; a
    new server starts and Redis comes back: each webhook is applied once, in order."""
    store = CallStore(redis.Redis.from_url(own_redis.url), private)
    sent = lifecycles(live_calls(store, 5))
    first = Granian(private)
    try:
        own_redis.stop()
        with requests.Session() as session:
            for _, event_id, body in sent:
                began = time.monotonic()
                answer = session.post(f"{first.url}/webhooks/daily", data=body,
                                      headers=sign_webhook(body), timeout=5)  # fmt: skip
                assert answer.status_code == 200, answer.text
                assert answer.json()["status"] == "spooled", event_id
                assert time.monotonic() - began < 1.0
            metrics = session.get(f"{first.url}/metrics", timeout=5).text
        assert "telephony_spool_entries 50" in metrics
    finally:
        first.kill()
    second = Granian(private)
    try:
        own_redis.start()
        wait_for(lambda: applied_in_order(store, sent), 5, "every webhook, once, in order")
        assert webhooks_on_the_feed(store) == sent_webhooks(sent)  # each once
        ready = requests.get(f"{second.url}/readyz", timeout=5).json()
        assert ready["status"] in ("ready", "degraded")
        wait_for(
            lambda: requests.get(f"{second.url}/readyz", timeout=5).json()["status"] == "ready",
            5,
            "readyz to say ready",
        )
    finally:
        second.stop()

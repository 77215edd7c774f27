"""One call hammered by several processes through two production web servers, and a Redis that
goes away for a moment: the state stays consistent and nothing is lost or applied twice."""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
import requests
from support.servers import granian

from telephony.config import Settings
from telephony.machine import RANK
from telephony.redis_server import RedisServer
from telephony.store import CallStore, Change

#: ``(event id, body, signed headers, names the call)`` of one webhook.
Delivery = tuple[str, bytes, dict[str, str], bool]
SPAWN = multiprocessing.get_context("spawn")


def post(session: requests.Session, url: str, delivery: Delivery) -> requests.Response:
    _, body, headers, _ = delivery
    return session.post(f"{url}/webhooks/daily", data=body, headers=headers, timeout=10)


def post_all(
    urls: list[str], deliveries: list[Delivery], seed: int, start: Any, results: Any
) -> None:
    """A client process: every delivery, shuffled, alternating between the two servers."""
    order = list(deliveries)
    random.Random(seed).shuffle(order)
    if seed % 2:  # session-only events first: likely to arrive before the session is known
        order.sort(key=lambda delivery: delivery[3])
    sessions = [requests.Session() for _ in urls]
    start.wait(30)
    answers = []
    for n, delivery in enumerate(order):
        response = post(sessions[n % len(urls)], urls[n % len(urls)], delivery)
        answers.append((delivery[0], n % len(urls), response.status_code, response.json()))
    results.put(("client", answers))


def apply_worker(
    settings: Settings, call_id: str, changes: list[Change], start: Any, results: Any
) -> None:
    """The worker's process: its changes straight into the store, the second one only once
    webhooks have started to land, so it races with them."""
    client = redis.Redis.from_url(settings.redis_url or "")
    store = CallStore(client, settings)
    start.wait(30)
    outcomes = [store.apply(changes[0]).status]
    deadline = time.monotonic() + 10
    while client.llen(store.keys.history(call_id)) < 8 and time.monotonic() < deadline:
        time.sleep(0.001)
    outcomes += [store.apply(change).status for change in changes[1:]]
    results.put(("worker", outcomes))


def lifecycle(call: Any) -> list[tuple[str, str, dict[str, Any], bool]]:
    """A dial-out's webhooks in their real order: ``(type, id, extra payload, names the call)``;
    half the warnings carry only the session (held until it is known)."""
    events: list[tuple[str, str, dict[str, Any], bool]] = [
        ("dialout.connected", "connected", {}, True)
    ]
    events += [("dialout.warning", f"warn-{n}", {"n": n}, n % 2 == 0) for n in range(16)]
    events += [("recording.started", f"note-{n}", {"n": n}, True) for n in range(4)]
    events += [("dialout.answered", "answered", {}, True), ("dialout.stopped", "stopped", {}, True)]
    return [(kind, f"{call.call_id}-{name}", extra, matched)
            for kind, name, extra, matched in events]  # fmt: skip


def deliveries_of(call: Any, sign_webhook: Any, kinds: tuple[str, ...] = ()) -> list[Delivery]:
    """The lifecycle's webhooks (only those of ``kinds`` if given), signed as Daily would."""
    found = []
    for kind, event_id, extra, matched in lifecycle(call):
        if kinds and kind not in kinds:
            continue
        body = call.envelope(kind, event_id, matched, **extra)
        found.append((event_id, body, sign_webhook(body), matched))
    return found


def ordered_final(settings: Settings, redis_client: redis.Redis, dialout: Any) -> Any:
    """The state the same events reach when applied one by one in their real order."""
    own = dataclasses.replace(settings, key_prefix=f"{settings.key_prefix}-ref")
    store = CallStore(redis_client, own)
    call = dialout()
    store.apply(call.queue())
    store.apply(call.dial())
    store.apply(call.accept())
    for kind, event_id, extra, matched in lifecycle(call):
        store.apply(call.webhook(kind, event_id, matched, **extra))
    record = store.get(call.call_id, history=False)
    assert record is not None
    return record["state"], record["reason"]


def test_processes_hammer_one_call_through_two_servers(
    settings: Settings,
    call_store: CallStore,
    redis_client: redis.Redis,
    dialout: Any,
    sign_webhook: Any,
) -> None:
    call = dialout()
    call_store.apply(call.queue())
    deliveries = deliveries_of(call, sign_webhook)
    matched = {event_id for event_id, _, _, named in deliveries if named}
    clients = 4
    with granian(settings) as first, granian(settings) as second:
        start = SPAWN.Barrier(clients + 2)
        results = SPAWN.Queue()
        processes = [
            SPAWN.Process(target=post_all, args=([first, second], deliveries * 3, seed, start,
                                                 results))
            for seed in range(clients)
        ]  # fmt: skip
        processes.append(SPAWN.Process(
            target=apply_worker,
            args=(settings, call.call_id, [call.dial(), call.accept()], start, results),
        ))  # fmt: skip
        for process in processes:
            process.start()
        start.wait(30)
        collected = [results.get(timeout=30) for _ in processes]
        for process in processes:
            process.join(timeout=10)
            assert process.exitcode == 0

    answers = [answer for kind, items in collected if kind == "client" for answer in items]
    worker = next(items for kind, items in collected if kind == "worker")
    assert len(answers) == clients * 3 * len(deliveries)
    assert {code for _, _, code, _ in answers} == {200}
    assert {server for _, server, _, _ in answers} == {0, 1}
    decided = Counter(
        eid for eid, _, _, body in answers if body["status"] in ("applied", "ignored")
    )
    held = Counter(eid for eid, _, _, body in answers if body["status"] == "held")
    assert {body["status"] for *_, body in answers} <= {"applied", "ignored", "duplicate", "held"}
    for event_id, _, _, named in deliveries:
        # Decided by exactly one request; an event naming only the session may instead have
        # been held (then applied inside the script that made the session known).
        assert decided[event_id] == 1 or (not named and decided[event_id] == 0 and held[event_id])
    assert held.keys() <= {eid for eid, *_ in deliveries} - matched
    assert all(status in ("applied", "ignored") for status in worker)

    record = call_store.get(call.call_id)
    assert record is not None
    assert (record["state"], record["reason"]) == ordered_final(settings, redis_client, dialout)
    assert record["sessionId"] == call.session_id
    ids = Counter(entry["eventId"] for entry in record["history"] if "eventId" in entry)
    assert ids == Counter(eid for eid, *_ in deliveries)  # every event, each exactly once
    assert len(record["history"]) == 1 + len(worker) + len(deliveries)
    assert call_store.redis.exists(call_store.keys.pending(call.session_id)) == 0

    feed = call_store.feed(after=0, limit=500)
    seqs = [message["seq"] for message in feed]
    assert all(b > a for a, b in itertools.pairwise(seqs))
    assert [m["seq"] for m in feed if m["callId"] == call.call_id] == [
        entry["seq"] for entry in record["history"]
    ]
    assert all(RANK[m["to"]] >= RANK[m["from"]] for m in feed), "a backward move was published"
    raw = call_store.redis.hgetall(call_store.keys.metrics)
    metrics = {k.decode(): int(v) for k, v in raw.items()}
    assert metrics["events_applied"] + metrics["events_ignored"] == len(record["history"])
    # Every request and worker change is counted once: decided, a duplicate, or held and then
    # decided or found a duplicate inside the script that made the session known.
    assert metrics.get("events_held", 0) == sum(held.values())
    counted = sum(metrics[f"events_{name}"] for name in ("applied", "ignored", "duplicate"))
    assert counted == len(answers) + len(worker) + 1


def test_redis_outage_answers_200_and_loses_nothing(
    settings: Settings, tmp_path: Path, dialout: Any, sign_webhook: Any
) -> None:
    """Webhooks that land while Redis is away are journalled and answered 200 (Daily's circuit
    breaker never trips), then applied once Redis is back: each exactly once."""
    with RedisServer(tmp_path / "redis", appendonly=True) as server:
        private = dataclasses.replace(settings, redis_url=server.url)
        client = redis.Redis.from_url(server.url)
        store = CallStore(client, private)
        call = dialout()
        for change in (call.queue(), call.dial(), call.accept()):
            store.apply(change)
        # Events whose outcome does not depend on their order: each one is applied when it lands.
        deliveries = deliveries_of(call, sign_webhook, ("dialout.connected", "dialout.warning"))
        with granian(private) as url:
            answers: list[tuple[str, requests.Response]] = []

            def poster() -> None:
                with requests.Session() as session:
                    for delivery in deliveries:
                        answers.append((delivery[0], post(session, url, delivery)))
                        time.sleep(0.02)

            thread = threading.Thread(target=poster, daemon=True)
            thread.start()
            _wait(lambda: len(answers) >= 4)
            server.stop()
            _wait(lambda: sum(r.json()["status"] == "spooled" for _, r in answers) >= 3)
            ready = requests.get(f"{url}/readyz", timeout=5)
            assert ready.status_code == 503
            assert ready.json()["error"] == "unavailable-error"
            restarted = RedisServer(server.directory, port=server.port, appendonly=True)
            restarted.start()
            try:
                thread.join(timeout=30)
                assert not thread.is_alive()

                def caught_up() -> bool:
                    answer = requests.get(f"{url}/readyz", timeout=5)
                    return answer.status_code == 200 and answer.json()["status"] == "ready"

                _wait(caught_up)
                with requests.Session() as session:
                    again = [(d[0], post(session, url, d)) for d in deliveries]
                record = CallStore(redis.Redis.from_url(server.url), private).get(call.call_id)
            finally:
                restarted.stop()

    assert {response.status_code for _, response in answers} == {200}
    statuses = Counter(response.json()["status"] for _, response in answers)
    assert statuses["applied"] >= 4 and statuses["spooled"] >= 3
    for event_id, response in again:  # every one was applied once already
        assert response.status_code == 200
        assert response.json()["status"] == "duplicate", event_id
    assert record is not None
    ids = Counter(entry["eventId"] for entry in record["history"] if "eventId" in entry)
    assert ids == Counter(event_id for event_id, *_ in deliveries)
    assert not any(entry.get("ignored") for entry in record["history"])
    assert record["state"] == "connected"


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)

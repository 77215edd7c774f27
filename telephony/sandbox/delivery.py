"""Sending webhooks the way Daily does: signed, in order per webhook, with its failure rules.

Each registered webhook has one :class:`Courier`: a queue and a worker thread, so a slow or
dead receiver delays only its own events, and events reach each receiver in the order they
happened (unless the outcome shuffles them on purpose). The courier applies the webhook's
``retryType``:

- ``circuit-breaker`` (Daily's default): one try per event; after
  :data:`~telephony.defaults.WEBHOOK_FAILURE_LIMIT` consecutive failures the webhook goes
  ``FAILED``, its queue is dropped and nothing more is sent until it is updated.
- ``exponential``: up to :data:`~telephony.defaults.WEBHOOK_EXPONENTIAL_RETRIES` retries per
  event, ``WEBHOOK_EXPONENTIAL_BASE * 2**k`` seconds apart (times the time scale), then the event
  is dropped.

A failure is a non-2xx answer, a connection error, or an answer slower than the delivery
timeout.

Daily promises neither order nor uniqueness: :class:`Disorder` makes every webhook show it on
demand (``--webhook-copies``, ``--webhook-delay``), whatever the call's outcome.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import requests

from telephony import defaults
from telephony.sandbox.events import Event
from telephony.sandbox.logs import ApiLog
from telephony.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, decode_secret, sign
from telephony.store import now_iso

log = logging.getLogger(__name__)

ACTIVE = "ACTIVE"
FAILED = "FAILED"
CIRCUIT_BREAKER = "circuit-breaker"
EXPONENTIAL = "exponential"


@dataclass
class Webhook:
    """Daily's webhook object; changed or replaced only under its courier's lock."""

    uuid: str
    url: str
    hmac: str
    basic_auth: str | None
    retry_type: str
    event_types: list[str]
    domain_id: str
    created_at: str
    updated_at: str
    state: str = ACTIVE
    failed_count: int = 0
    last_moment_pushed: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "url": self.url,
            "hmac": self.hmac,
            "basicAuth": self.basic_auth,
            "retryType": self.retry_type,
            "eventTypes": list(self.event_types),
            "state": self.state,
            "failedCount": self.failed_count,
            "lastMomentPushed": self.last_moment_pushed,
            "domainId": self.domain_id,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }

    def wants(self, type_: str) -> bool:
        """An empty ``eventTypes`` subscribes to every event."""
        return not self.event_types or type_ in self.event_types


@dataclass(frozen=True)
class Disorder:
    """Duplicates and delays for every event, on top of what an outcome does itself.

    Each event is published ``copies`` times (the same ``id``); each copy after its own random
    delay of up to ``delay`` seconds (time scale 1.0), so copies and later events overtake
    each other. The default is Daily on a good day: once, at once.
    """

    copies: int = 1
    delay: float = 0.0
    #: Where the delays come from: pass a seeded one to repeat a run's order.
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.copies < 1 or self.delay < 0:
            raise ValueError("copies must be at least 1 and delay not negative")

    def delays(self, time_scale: float) -> list[float]:
        """Seconds (scaled) to hold back each copy of one event; 0 = queue it now."""
        if not self.delay:
            return [0.0] * self.copies
        return [self.rng.uniform(0, self.delay) * time_scale for _ in range(self.copies)]


@dataclass(frozen=True)
class Result:
    status: int | None
    error: str | None

    def ok(self, *, exact_200: bool = False) -> bool:
        if self.error is not None or self.status is None:
            return False
        return self.status == 200 if exact_200 else 200 <= self.status < 300


class DeliveryLog:
    """Every attempt to send a webhook (test requests included), for introspection, and for
    Daily's own ``GET /logs/api?source=webhook`` (``api_log``) with the body that was sent."""

    def __init__(self, api_log: ApiLog | None = None) -> None:
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.api_log = api_log

    def record(
        self,
        webhook: Webhook,
        event_id: str | None,
        type_: str,
        attempt: int,
        result: Result,
        *,
        ok: bool,
        body: bytes = b"",
    ) -> None:
        if self.api_log is not None:
            answer = result.error or f"HTTP {result.status}"
            self.api_log.add(
                "webhook", method="POST", url=webhook.url, status=result.status,
                request=body.decode(), response=answer, webhookId=webhook.uuid,
            )  # fmt: skip
        entry = {
            "webhook": webhook.uuid,
            "url": webhook.url,
            "eventId": event_id,
            "type": type_,
            "attempt": attempt,
            "t": time.monotonic(),
            "status": result.status,
            "ok": ok,
            "error": result.error,
        }
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def basic_auth_header(credentials: str) -> str:
    """``user:password`` is encoded; anything else is taken as already base64-encoded."""
    token = base64.b64encode(credentials.encode()).decode() if ":" in credentials else credentials
    return f"Basic {token}"


def post_signed(
    session: requests.Session | None,
    webhook: Webhook,
    body: bytes,
    timeout: float,
) -> Result:
    """POST ``body`` signed with the webhook's secret; slower than ``timeout`` is a failure."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "telephony-sandbox (Daily webhooks)",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(decode_secret(webhook.hmac), timestamp, body),
    }
    if webhook.basic_auth:
        headers["Authorization"] = basic_auth_header(webhook.basic_auth)
    started = time.monotonic()
    poster = session.post if session is not None else requests.post
    try:
        response = poster(webhook.url, data=body, headers=headers, timeout=timeout)
        response.close()
    except requests.Timeout:
        return Result(None, f"timed out after {timeout:g}s")
    except requests.RequestException as exc:
        return Result(None, f"{type(exc).__name__}: {exc}")
    elapsed = time.monotonic() - started
    if elapsed > timeout:
        return Result(response.status_code, f"slow: answered after {elapsed:.2f}s")
    return Result(response.status_code, None)


class Dispatch:
    """Completion of one publication: done once every courier it went to has settled it."""

    def __init__(self) -> None:
        self._pending = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._done.set()

    def add(self) -> None:
        with self._lock:
            self._pending += 1
            self._done.clear()

    def settle(self) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending <= 0:
                self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


class Courier:
    """One webhook's queue and worker thread; see the module docstring for the rules."""

    def __init__(
        self,
        webhook: Webhook,
        *,
        deliveries: DeliveryLog,
        delivery_timeout: float,
        time_scale: float,
    ) -> None:
        self.webhook = webhook
        self.lock = threading.Lock()
        self._cond = threading.Condition(self.lock)
        self._queue: deque[tuple[Event, Dispatch]] = deque()
        self._generation = 0
        self._closed = False
        self._deliveries = deliveries
        self._timeout = delivery_timeout
        self._time_scale = time_scale
        self._thread = threading.Thread(
            target=self._run, name=f"sandbox-webhook-{webhook.uuid[:8]}", daemon=True
        )
        self._thread.start()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return self.webhook.to_json()

    def enqueue(self, event: Event, dispatch: Dispatch) -> None:
        """Queue ``event`` if this webhook is active and subscribed to it."""
        with self._cond:
            if self._closed or self.webhook.state != ACTIVE or not self.webhook.wants(event.type):
                return
            dispatch.add()
            self._queue.append((event, dispatch))
            self._cond.notify_all()

    def update(self, settings: Mapping[str, Any]) -> None:
        """Set the webhook's ``settings`` (attribute names, already test-requested) and
        re-activate it."""
        with self._cond:
            self.webhook = replace(
                self.webhook, **settings, state=ACTIVE, failed_count=0, updated_at=now_iso()
            )

    def drop_queue(self) -> None:
        """Forget everything queued or waiting for a retry."""
        with self._cond:
            self._drop_locked()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._drop_locked()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=0.5)

    def _drop_locked(self) -> None:
        self._generation += 1
        while self._queue:
            self._queue.popleft()[1].settle()
        self._cond.notify_all()

    def _next(self) -> tuple[Event, int] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            return self._queue[0][0], self._generation

    def _run(self) -> None:
        session = requests.Session()
        try:
            while (item := self._next()) is not None:
                event, generation = item
                try:
                    self._deliver(session, event, generation)
                finally:
                    with self._cond:
                        # A drop in the meantime already emptied (and settled) the queue.
                        if self._generation == generation and self._queue:
                            self._queue.popleft()[1].settle()
        finally:
            session.close()

    def _deliver(self, session: requests.Session, event: Event, generation: int) -> None:
        retries = defaults.WEBHOOK_EXPONENTIAL_RETRIES
        for attempt in range(1, retries + 2):
            with self.lock:
                if self._generation != generation:
                    return
                webhook = replace(self.webhook)  # a consistent copy to send with
            body = event.body()
            result = post_signed(session, webhook, body, self._timeout)
            ok = result.ok()
            self._deliveries.record(
                webhook, event.id, event.type, attempt, result, ok=ok, body=body
            )
            with self._cond:
                if self._generation != generation:
                    return
                if ok:
                    self.webhook.failed_count = 0
                    self.webhook.last_moment_pushed = now_iso()
                    return
                self.webhook.failed_count += 1
                if self.webhook.retry_type == CIRCUIT_BREAKER:
                    if self.webhook.failed_count >= defaults.WEBHOOK_FAILURE_LIMIT:
                        log.info("sandbox: webhook %s FAILED", webhook.uuid)
                        self.webhook.state = FAILED
                        self.webhook.updated_at = now_iso()
                        self._drop_locked()
                    return
                if attempt > retries:
                    return  # exponential: given up, the event is dropped
                backoff = defaults.WEBHOOK_EXPONENTIAL_BASE * 2 ** (attempt - 1) * self._time_scale
                deadline = time.monotonic() + backoff
                while self._generation == generation and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)

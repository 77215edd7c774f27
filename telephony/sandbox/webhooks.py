"""Daily's ``/webhooks`` resource: registration, the test request, and publishing events.

Creating or updating a webhook POSTs :data:`~telephony.sandbox.events.TEST_BODY` (signed, like
every delivery) to its URL and fails the API call with 400 ``invalid-request-error`` unless the
answer is a 200 within the test-request timeout, as Daily does. A webhook created without
``hmac`` gets a generated base64 secret, returned in the object. Delivery itself (ordering,
circuit breaker, retries) is :mod:`telephony.sandbox.delivery`'s.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from telephony.sandbox import errors
from telephony.sandbox.delivery import (
    CIRCUIT_BREAKER,
    EXPONENTIAL,
    Courier,
    DeliveryLog,
    Disorder,
    Dispatch,
    Webhook,
    post_signed,
)
from telephony.sandbox.events import KNOWN_TYPES, TEST_BODY, Event
from telephony.signature import decode_secret
from telephony.store import now_iso

#: The settable fields of a webhook: JSON name -> :class:`Webhook` attribute.
_ATTRIBUTES = {
    "url": "url",
    "hmac": "hmac",
    "basicAuth": "basic_auth",
    "retryType": "retry_type",
    "eventTypes": "event_types",
}
URL_MAX = 2048


def generate_secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _check(body: object, *, creating: bool) -> dict[str, Any]:
    """The webhook fields of a create/update body, or 400 naming every bad field."""
    if not isinstance(body, dict):
        raise errors.invalid("body must be a JSON object")
    problems: dict[str, str] = {}
    for key in body:
        if key not in _ATTRIBUTES:
            problems[str(key)] = "unknown field"
    url = body.get("url")
    if url is None:
        if creating:
            problems["url"] = "required"
    elif not isinstance(url, str) or len(url) > URL_MAX:
        problems["url"] = f"must be an http(s) URL of at most {URL_MAX} characters"
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems["url"] = f"must be an http(s) URL of at most {URL_MAX} characters"
    hmac_ = body.get("hmac")
    if hmac_ is not None:
        try:
            if not isinstance(hmac_, str) or not decode_secret(hmac_):
                raise ValueError
        except ValueError:
            problems["hmac"] = "must be a non-empty base64 string"
    basic = body.get("basicAuth")
    if basic is not None and not isinstance(basic, str):
        problems["basicAuth"] = "must be a string"
    retry = body.get("retryType")
    if retry is not None and retry not in (CIRCUIT_BREAKER, EXPONENTIAL):
        problems["retryType"] = f"must be {CIRCUIT_BREAKER!r} or {EXPONENTIAL!r}"
    types = body.get("eventTypes")
    if types is not None and (
        not isinstance(types, list) or not all(t in KNOWN_TYPES for t in types)
    ):
        problems["eventTypes"] = "must be a list of Daily webhook event types"
    if problems:
        raise errors.invalid("; ".join(f"{k}: {v}" for k, v in problems.items()))
    return {key: body[key] for key in _ATTRIBUTES if key in body and body[key] is not None}


class Webhooks:
    """The registered webhooks, each with its courier."""

    def __init__(
        self,
        *,
        domain_id: str,
        deliveries: DeliveryLog,
        test_request_timeout: float,
        delivery_timeout: float,
        time_scale: float,
        later: Callable[[float, Callable[[], None]], None],
        disorder: Disorder | None = None,
    ) -> None:
        self.domain_id = domain_id
        #: Runs a callback after some seconds (the sandbox's scheduler): delayed copies.
        self._later = later
        self.disorder = disorder or Disorder()
        self.deliveries = deliveries
        self.test_request_timeout = test_request_timeout
        self.delivery_timeout = delivery_timeout
        self.time_scale = time_scale
        self._couriers: dict[str, Courier] = {}
        self._lock = threading.Lock()

    def create(self, body: object) -> dict[str, Any]:
        fields = _check(body, creating=True)
        now = now_iso()
        webhook = Webhook(
            uuid=str(uuid.uuid4()),
            url=fields["url"],
            hmac=fields.get("hmac") or generate_secret(),
            basic_auth=fields.get("basicAuth"),
            retry_type=fields.get("retryType", CIRCUIT_BREAKER),
            event_types=list(fields.get("eventTypes", [])),
            domain_id=self.domain_id,
            created_at=now,
            updated_at=now,
        )
        self._test_request(webhook)
        courier = Courier(
            webhook,
            deliveries=self.deliveries,
            delivery_timeout=self.delivery_timeout,
            time_scale=self.time_scale,
        )
        with self._lock:
            self._couriers[webhook.uuid] = courier
        return courier.snapshot()

    def update(self, webhook_id: str, body: object) -> dict[str, Any]:
        """Change fields and re-activate a ``FAILED`` webhook (after a new test request)."""
        courier = self._courier(webhook_id)
        fields = _check(body, creating=False)
        changes = {_ATTRIBUTES[key]: value for key, value in fields.items()}
        with courier.lock:
            candidate = dataclasses.replace(courier.webhook, **changes)
        self._test_request(candidate)
        # All of the tested settings, not just the changes: what goes live is what was tested.
        courier.update({name: getattr(candidate, name) for name in _ATTRIBUTES.values()})
        return courier.snapshot()

    def get(self, webhook_id: str) -> dict[str, Any]:
        return self._courier(webhook_id).snapshot()

    def list(self) -> list[dict[str, Any]]:
        return [c.snapshot() for c in self._all()]

    def delete(self, webhook_id: str) -> dict[str, Any]:
        with self._lock:
            courier = self._couriers.pop(webhook_id, None)
        if courier is None:
            raise errors.not_found(f"webhook {webhook_id} not found")
        courier.close()
        return courier.snapshot()

    def publish(self, events: Sequence[Event]) -> Dispatch:
        """Queue ``events`` (in this order) to every active, subscribed webhook, each as often
        and as late as :attr:`disorder` says.

        A delayed copy counts in the returned dispatch from now, so a start answered only once
        its events were delivered (the ``early`` outcome) waits for it too.
        """
        dispatch = Dispatch()
        for courier in self._all():
            for event in events:
                for delay in self.disorder.delays(self.time_scale):
                    if delay <= 0:
                        courier.enqueue(event, dispatch)
                        continue
                    dispatch.add()

                    def release(courier: Courier = courier, event: Event = event) -> None:
                        courier.enqueue(event, dispatch)
                        dispatch.settle()

                    self._later(delay, release)
        return dispatch

    def drop_queues(self) -> None:
        for courier in self._all():
            courier.drop_queue()

    def close(self) -> None:
        with self._lock:
            couriers = list(self._couriers.values())
            self._couriers.clear()
        for courier in couriers:
            courier.close()

    def _all(self) -> Iterable[Courier]:
        with self._lock:
            return list(self._couriers.values())

    def _courier(self, webhook_id: str) -> Courier:
        with self._lock:
            courier = self._couriers.get(webhook_id)
        if courier is None:
            raise errors.not_found(f"webhook {webhook_id} not found")
        return courier

    def _test_request(self, webhook: Webhook) -> None:
        result = post_signed(None, webhook, TEST_BODY, self.test_request_timeout)
        ok = result.ok(exact_200=True)
        self.deliveries.record(webhook, None, "test", 1, result, ok=ok, body=TEST_BODY)
        if not ok:
            reason = result.error or f"answered {result.status}"
            raise errors.invalid(
                f"webhook test request to {webhook.url} did not get a 200 "
                f"within {self.test_request_timeout:g}s: {reason}"
            )

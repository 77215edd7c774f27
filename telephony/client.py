"""``TelephonyClient``: the Python API for backends, straight onto Redis and the queues.

It validates with the HTTP API's own rules and goes through the same domain commands
(:class:`telephony.calls.Calls`), so a call placed here is the same as one placed over HTTP,
minus the HTTP hop. Errors are part of the API: :class:`ValidationError` (bad input, with
``fields``), :class:`CallNotFound`, :class:`CallConflict` (both :class:`CommandError`).
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import re
import threading
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple

import redis

from telephony import defaults, machine, validation
from telephony.calls import CallConflict, CallNotFound, Calls, CommandError
from telephony.config import Settings
from telephony.store import CallStore, connect
from telephony.validation import (
    ValidationError,
    call_request,
    camel,
    dtmf_request,
    listing,
    transfer_request,
)

__all__ = [
    "Call",
    "CallConflict",
    "CallNotFound",
    "CommandError",
    "Page",
    "Subscription",
    "TelephonyClient",
    "ValidationError",
]

# --- The call ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One call, as ``GET /v1/calls/{id}`` shows it, with typed, snake_case attributes.

    ``history`` is the call's recorded events, oldest first (empty in listings and in the
    answers to commands). ``extra`` holds everything else recorded on the call (``options``,
    ``ringTimeoutSec``, ``transferredTo``, ...) under the API's names. :meth:`to_dict` gives
    back the API's JSON shape.
    """

    id: str
    kind: str
    room: str | None
    destination: str | None
    state: str
    session_id: str | None
    attempts: int
    error: str | None
    reason: str | None
    created_at: str | None
    updated_at: str | None
    metadata: Any
    history: tuple[dict[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        """``stopped`` or ``error``: nothing will change this call any more."""
        return self.state in machine.FINAL

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Call:
        known: dict[str, Any] = {name: data.get(api) for name, api in _CALL_ATTRIBUTES.items()}
        return cls(
            **known,
            history=tuple(data.get("history") or ()),
            extra={k: v for k, v in data.items() if k not in _API_NAMES},
        )

    def to_dict(self, history: bool = True) -> dict[str, Any]:
        data = {api: getattr(self, name) for name, api in _CALL_ATTRIBUTES.items()}
        data.update(self.extra)
        if history:
            data["history"] = list(self.history)
        return data


#: Attribute → the API's name, for every attribute but ``history`` and ``extra``.
#: ``dial``'s default ``metadata``: left out (``None`` is JSON's ``null``, a value).
NOT_GIVEN: Any = object()

_CALL_ATTRIBUTES = {
    f.name: camel(f.name) for f in dataclasses.fields(Call) if f.name not in ("history", "extra")
}
_API_NAMES = frozenset({*_CALL_ATTRIBUTES.values(), "history"})


class Page(NamedTuple):
    """One page of a listing; pass ``next`` as ``cursor`` for the following one (``None``:
    this was the last)."""

    calls: list[Call]
    next: str | None


# --- Live events ------------------------------------------------------------------------------


class Subscription(Iterator[dict[str, Any]]):
    """Events published from now on, decoded; iterate, or :meth:`get` with a timeout.

    Pub/sub delivers only while subscribed: use :meth:`TelephonyClient.follow` to first catch
    up from the durable feed. Close it (or use ``with``) to free its connection.
    """

    def __init__(self, client: Any, channel: str) -> None:
        self.channel = channel
        self._pubsub = client.pubsub()
        self._pubsub.subscribe(channel)
        # Wait for Redis to confirm: from then on nothing published is missed, which is what
        # lets follow() read the feed afterwards without a gap.
        confirmed = self._pubsub.get_message(timeout=defaults.SUBSCRIBE_CONFIRM_TIMEOUT)
        if confirmed is None or confirmed.get("type") != "subscribe":
            self._pubsub.close()
            raise redis.ConnectionError(f"no confirmation of the subscription to {channel}")
        self._closed = False
        self._released = False
        #: Held while reading: :meth:`close` from another thread must not pull the connection
        #: from under a read, so whoever finds the lock free releases it.
        self._reading = threading.Lock()

    def get(self, timeout: float = 0.0) -> dict[str, Any] | None:
        """The next event, or ``None`` if none came within ``timeout`` seconds (or closed)."""
        with self._reading:
            event = self._read(time.monotonic() + timeout)
        if self._closed:  # closed by another thread while this one was reading
            self._release()
        return event

    def _read(self, deadline: float) -> dict[str, Any] | None:
        while not self._closed:
            left = deadline - time.monotonic()
            # Waits are capped so that a close() from another thread is noticed promptly.
            wait = max(0.0, min(left, defaults.SUBSCRIBE_POLL))
            message = self._pubsub.get_message(timeout=wait)
            if message is not None and message.get("type") == "message":
                event: dict[str, Any] = json.loads(message["data"])
                return event
            if left <= 0:
                return None
        return None

    def __next__(self) -> dict[str, Any]:
        while not self._closed:
            event = self.get(defaults.SUBSCRIBE_POLL)
            if event is not None:
                return event
        raise StopIteration

    def close(self) -> None:
        """Stop; safe from any thread, and more than once."""
        self._closed = True
        self._release()

    def _release(self) -> None:
        if self._reading.acquire(blocking=False):
            try:
                if not self._released:
                    self._released = True
                    self._pubsub.close()
            finally:
                self._reading.release()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- The client -------------------------------------------------------------------------------


def _plain(value: Any, camel_keys: bool = False) -> Any:
    """Tuples to lists, mappings to dicts: what a JSON body would have held."""
    if isinstance(value, Mapping):
        return {(camel(k) if camel_keys else k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def rename_fields(problems: Mapping[str, str], names: Mapping[str, str]) -> dict[str, str]:
    """Error paths in the caller's names (``videoSettings.fps`` → ``video_settings.fps``): the
    first segment of each path is looked up in ``names``."""
    renamed: dict[str, str] = {}
    for path, text in problems.items():
        head = re.split(r"[.\[]", path, maxsplit=1)[0]
        renamed[names.get(head, head) + path[len(head) :]] = text
    return renamed


class TelephonyClient:
    """Place and control calls from Python, through Redis (no HTTP).

    ``TelephonyClient()`` reads its settings from the environment (``REDIS_URL``,
    ``TELEPHONY_KEY_PREFIX``, ``TELEPHONY_QUEUE``, ...); ``redis_url`` overrides the one in
    ``settings``. Thread-safe (one Redis connection pool); :meth:`close` when done.
    """

    def __init__(self, redis_url: str | None = None, *, settings: Settings | None = None) -> None:
        settings = settings or Settings.from_env()
        if redis_url:
            settings = dataclasses.replace(settings, redis_url=redis_url)
        self.settings = settings
        self.redis: Any = connect(settings, "the client", socket_timeout=10)
        self.store = CallStore(self.redis, settings)
        self.calls = Calls(self.redis, settings, self.store)

    # --- commands -------------------------------------------------------------------------

    def dial(
        self,
        room: str,
        *,
        phone_number: str | None = None,
        sip_uri: str | None = None,
        display_name: str | None = None,
        user_id: str | None = None,
        caller_id: str | None = None,
        extension: str | None = None,
        wait_before_extension_dial_sec: int | None = None,
        video: bool | None = None,
        video_settings: Mapping[str, int] | None = None,
        codecs: Mapping[str, Any] | None = None,
        permissions: Mapping[str, Any] | None = None,
        ring_timeout_sec: int | None = None,
        max_duration_sec: int | None = None,
        metadata: Any = NOT_GIVEN,
        idempotency_key: str | None = None,
    ) -> Call:
        """Queue a dial-out (``POST /v1/calls``); options are Daily's, in snake_case.

        ``user_id`` becomes the call's id (and Daily's ``userId``); by default one is made up.
        ``metadata`` is any JSON value, ``None`` (JSON ``null``) included; left out, it is ``{}``.
        A repeated ``idempotency_key`` with the same options returns the first call; with other
        options it raises :class:`CallConflict`.
        """
        options: dict[str, Any] = {
            "phone_number": phone_number,
            "sip_uri": sip_uri,
            "display_name": display_name,
            "user_id": user_id,
            "caller_id": caller_id,
            "extension": extension,
            "wait_before_extension_dial_sec": wait_before_extension_dial_sec,
            "video": video,
            "video_settings": video_settings,
            "codecs": codecs,
            "permissions": permissions,
            "ring_timeout_sec": ring_timeout_sec,
            "max_duration_sec": max_duration_sec,
        }
        given = {name: value for name, value in options.items() if value is not None}
        if metadata is not NOT_GIVEN:
            given["metadata"] = metadata
        body = {"room": room}
        body.update(
            {camel(k): _plain(v, camel_keys=k == "video_settings") for k, v in given.items()}
        )
        problems: dict[str, str] = {}
        if idempotency_key is not None:
            try:
                validation.idempotency_key(idempotency_key)
            except ValidationError as exc:
                problems.update(exc.fields)
        try:
            request = call_request(body)
        except ValidationError as exc:
            names = {camel(name): name for name in (*options, "metadata")}
            problems.update(rename_fields(exc.fields, names))
        if problems:
            raise ValidationError(problems)
        call, _ = self.calls.place(request, idempotency_key)
        return Call.from_dict(call)

    def send_dtmf(
        self,
        call_id: str,
        tones: str,
        method: str | None = None,
        digit_duration_ms: int | None = None,
    ) -> Call:
        """Queue DTMF tones; :class:`CallConflict` unless the call is connected or answered."""
        body: dict[str, Any] = {"tones": tones}
        if method is not None:
            body["method"] = method
        if digit_duration_ms is not None:
            body["digitDurationMs"] = digit_duration_ms
        dtmf = self._validated(dtmf_request, body, {"digitDurationMs": "digit_duration_ms"})
        return Call.from_dict(self.calls.send_dtmf(call_id, dtmf))

    def transfer(
        self,
        call_id: str,
        to_end_point: str,
        *,
        caller_id: str | None = None,
        extension: str | None = None,
        wait_before_extension_dial_sec: int | None = None,
        refer: bool | None = None,
    ) -> Call:
        """Queue a transfer (Daily's ``sipCallTransfer``; ``refer=True``: ``sipRefer``)."""
        options = {
            "to_end_point": to_end_point,
            "caller_id": caller_id,
            "extension": extension,
            "wait_before_extension_dial_sec": wait_before_extension_dial_sec,
            "refer": refer,
        }
        given = {name: value for name, value in options.items() if value is not None}
        body = {camel(name): value for name, value in given.items()}
        transfer = self._validated(transfer_request, body, {camel(n): n for n in options})
        return Call.from_dict(self.calls.transfer(call_id, transfer))

    def stop(self, call_id: str) -> Call:
        """Hang up, or cancel a call still queued; a finished call is returned as is."""
        return Call.from_dict(self.calls.stop(call_id))

    @staticmethod
    def _validated(check: Any, body: dict[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
        try:
            clean: dict[str, Any] = check(body)
        except ValidationError as exc:
            raise ValidationError(rename_fields(exc.fields, names)) from None
        return clean

    # --- reading --------------------------------------------------------------------------

    def get(self, call_id: str) -> Call | None:
        found = self.store.get(call_id)
        return None if found is None else Call.from_dict(found)

    def list(
        self,
        *,
        state: str | None = None,
        room: str | None = None,
        limit: int = defaults.PAGE_DEFAULT,
        cursor: str | None = None,
    ) -> Page:
        """Calls newest first, without their history (``GET /v1/calls``)."""
        listing(state, room, limit, cursor)
        calls, next_cursor = self.store.page(state=state, room=room, limit=limit, cursor=cursor)
        return Page([Call.from_dict(c) for c in calls], next_cursor)

    def events(
        self, after: int = 0, limit: int = defaults.PAGE_DEFAULT
    ) -> builtins.list[dict[str, Any]]:
        """The durable feed: events with ``seq > after``, in order (``GET /v1/events``)."""
        validation.feed_query(after, limit)
        return self.store.feed(after=after, limit=limit)

    # --- live events ----------------------------------------------------------------------

    def subscribe(self, call_id: str | None = None) -> Subscription:
        """Events from now on: every call's, or one call's (``{prefix}:calls:{id}``)."""
        keys = self.store.keys
        return Subscription(
            self.redis, keys.events_channel if call_id is None else keys.call_channel(call_id)
        )

    def follow(
        self, after: int = 0, call_id: str | None = None
    ) -> Generator[dict[str, Any], None, None]:
        """Every event with ``seq > after``: first those recorded, then live ones, no gap and
        no repeat (subscribed before catching up; ``seq`` de-duplicates the overlap).

        For one call, the catch-up comes from its history (which outlives the feed's trim),
        shaped as events. Endless: ``close()`` the generator (or break) to stop.
        """
        with self.subscribe(call_id) as live:
            last = after
            for event in self._recorded(after, call_id):
                last = event["seq"]
                yield event
            for event in live:
                if event["seq"] > last:
                    last = event["seq"]
                    yield event

    def _recorded(self, after: int, call_id: str | None) -> Iterator[dict[str, Any]]:
        if call_id is not None:
            call = self.store.get(call_id)
            for entry in (call or {}).get("history", ()):
                if entry["seq"] > after:
                    yield _as_event(call or {}, entry)
            return
        while True:
            page = self.store.feed(after=after, limit=defaults.PAGE_MAX)
            yield from page
            if len(page) < defaults.PAGE_MAX:
                return
            after = page[-1]["seq"]

    # --- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> TelephonyClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _as_event(call: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """A history entry in the shape of a published event (``sessionId`` as known now)."""
    return {
        "seq": entry["seq"],
        "callId": call.get("id"),
        "sessionId": call.get("sessionId"),
        "room": call.get("room"),
        "kind": call.get("kind"),
        "event": entry.get("event"),
        "from": entry.get("from"),
        "to": entry.get("to"),
        "at": entry.get("at"),
        "source": entry.get("source"),
        "ignored": bool(entry.get("ignored", False)),
        "data": entry.get("data"),
    }

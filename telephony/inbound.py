"""Daily's webhooks, from raw signed bytes to a :class:`~telephony.store.Change` applied.

No Flask here: the web layer hands over the raw body and two headers and maps the exceptions
to status codes. Unknown event types are kept on the feed (and on the call when it can be
matched), never refused: Daily circuit-breaks a webhook after three failed deliveries.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import redis

from telephony import defaults, signature
from telephony.config import Settings
from telephony.record import values
from telephony.spool import Spool, SpoolFull
from telephony.store import CallStore, Change, Outcome, iso_time, now_iso
from telephony.validation import is_unicode


class WebhookRejected(Exception):
    """Base of the reasons a webhook is refused; ``status`` is the HTTP answer."""

    status = 400


class Forged(WebhookRejected):
    """Missing or wrong signature, or no secret configured (then every webhook is refused)."""

    status = 401


class Malformed(WebhookRejected):
    """Correctly signed, but not a JSON object."""


class Unavailable(WebhookRejected):
    """Authentic, but neither Redis nor the spool could take it: Daily must retry it."""

    status = 503


#: Daily event type → (trigger, call kind, fields set when the move applies).
_TYPES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "dialout.connected": ("connect", "dialout", {}),
    "dialout.answered": ("answer", "dialout", {}),
    "dialout.stopped": ("stop", "dialout", values(reason="hangup")),
    "dialout.warning": ("warn", "dialout", {}),
    "dialout.error": ("fail", "dialout", values(reason="error")),
    "dialin.connected": ("connect", "dialin", {}),
    "dialin.stopped": ("stop", "dialin", values(reason="hangup")),
    "dialin.warning": ("warn", "dialin", {}),
    "dialin.error": ("fail", "dialin", values(reason="error")),
    "dialin.ready": ("note", "dialin", {}),
}
_TRANSFER_PREFIX = "calltransfer."


class Receiver:
    """Verifies and applies webhooks; one per process, sharing the store's connection pool.

    An authentic webhook that cannot be committed because Redis is away goes to the
    :class:`~telephony.spool.Spool` (when there is one), and so does every later one while the
    spool holds anything, so that webhooks are applied in the order they arrived.
    """

    def __init__(self, store: CallStore, settings: Settings, spool: Spool | None = None) -> None:
        self.store = store
        self.spool = spool
        #: Older signed webhooks are recorded but move nothing (``WEBHOOK_MAX_AGE``).
        self.max_age = min(defaults.WEBHOOK_MAX_AGE, settings.dedupe_ttl)
        self.key: bytes | None = None
        if settings.webhook_secret:
            self.key = signature.decode_secret(settings.webhook_secret.reveal())

    def verify(self, body: bytes, timestamp: str | None, sig: str | None) -> dict[str, Any]:
        """The envelope of an authentic webhook; ``{}`` for Daily's test request, which is
        answered whether or not it is signed (see :func:`is_test_request`)."""
        envelope = _envelope(body)
        if isinstance(envelope, dict) and is_test_request(envelope):
            return {}
        if self.key is None or not signature.verify(self.key, timestamp, sig, body):
            raise Forged("missing or invalid webhook signature")
        if isinstance(envelope, str):
            raise Malformed(envelope)
        return envelope

    def receive(self, body: bytes, timestamp: str | None, sig: str | None) -> Outcome | None:
        """Apply an authentic webhook; ``None`` for Daily's test request (no known shape)."""
        envelope = self.verify(body, timestamp, sig)
        change = to_change(envelope, safe=plainly_safe(body))
        if change is None:
            return None
        age = signature.age(timestamp, time.time())
        if age is None or not -defaults.WEBHOOK_CLOCK_SKEW <= age <= self.max_age:
            change = _stale(change, age)
        if self.spool is not None and self.spool.busy:
            return self._spool(envelope)  # behind the webhooks already waiting
        try:
            return self.store.apply(change)
        except (redis.ConnectionError, redis.TimeoutError):
            if self.spool is None:
                raise
            return self._spool(envelope)

    def apply(self, envelope: dict[str, Any]) -> Outcome | None:
        """Commit one verified envelope (the spool's way back in): the normal apply path."""
        change = to_change(envelope)
        return None if change is None else self.store.apply(change)

    def _spool(self, envelope: dict[str, Any]) -> Outcome:
        assert self.spool is not None
        try:
            self.spool.append(envelope)
        except (SpoolFull, OSError) as exc:
            raise Unavailable(f"state store unavailable and {exc}") from None
        return Outcome("spooled", "", "", "", 0)


def _stale(change: Change, age: float | None) -> Change:
    """A webhook signed too long ago (or in the future), as it is recorded: on the feed alone,
    owned by no call and moving nothing (a replay cannot revive what ended); its id is still
    remembered."""
    data = change.data if isinstance(change.data, dict) else {}
    stale = {"ageSec": None if age is None else round(age), "maxAgeSec": defaults.WEBHOOK_MAX_AGE}
    data = {**data, "telephonyStale": stale}
    return dataclasses.replace(
        change, trigger="note", call_id="", session_id="", fields={}, create=None, mode="",
        data=data,
    )  # fmt: skip


def is_test_request(envelope: dict[str, Any]) -> bool:
    """Whether a body is Daily's test request: a JSON object without an event ``type``.

    Daily POSTs it when a webhook is created or updated and fails that API call unless it gets
    a 200; whether it is signed is not documented (``../shared/daily-api.md``). It carries no
    event, so answering it changes nothing, and an endpoint that refused it could never be
    registered.
    """
    return envelope.get("type") is None


def _envelope(body: bytes) -> dict[str, Any] | str:
    """The body as a JSON object, or why it is not one (said only to a signed request)."""
    try:
        envelope = _parse(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "body is not valid JSON"
    if not isinstance(envelope, dict):
        return "body must be a JSON object"
    return envelope


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _event_time(payload: dict[str, Any]) -> str:
    """``payload.timestamp`` (seconds, as a string or a number) as ISO; now if unusable."""
    try:
        return iso_time(float(payload.get("timestamp")))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return now_iso()


def to_change(envelope: dict[str, Any], safe: bool = False) -> Change | None:
    """The change an envelope asks for; ``None`` when it is Daily's test request.

    The envelope is first put in its safe form (:func:`safe_form`): whatever an authentic
    webhook holds, its event is stored, readable, and still moves its call. ``safe``: the
    caller knows it already is (:func:`plainly_safe`), so the walk is skipped.
    """
    changed: dict[str, str] = {}
    if not safe:
        envelope, changed = safe_form(envelope)
    kind = envelope.get("type")
    payload = envelope.get("payload")
    if not isinstance(kind, str) or not isinstance(payload, dict):
        return None
    if changed:
        payload = {**payload, SAFE_FORM: changed}
    session_id = _text(payload.get("session_id"))
    common: dict[str, Any] = {
        "event": kind,
        "source": "webhook",
        "event_id": _text(envelope.get("id")),
        "session_id": session_id,
        "data": payload,
        "at": _event_time(payload),
    }
    if kind in _TYPES:
        trigger, call_kind, fields = _TYPES[kind]
        fields = dict(fields)
        if trigger == "fail":
            fields.update(values(error=_text(payload.get("error_msg")) or kind))
        if trigger in ("stop", "fail"):
            fields.update(values(ended_at=common["at"]))
        elif trigger == "answer":
            fields.update(values(answered_at=common["at"]))
        if call_kind == "dialin":
            if not session_id:  # dialin.ready: about a room, not a session
                return Change(trigger="note", **common)
            return Change(
                trigger=trigger,
                call_id=defaults.DIALIN_ID_PREFIX + session_id,
                fields=fields,
                create=values(
                    kind="dialin",
                    room=_text(payload.get("room")),
                    destination=_text(payload.get("sip_from")),
                ),
                mode="upsert",
                **common,
            )
        return Change(
            trigger=trigger, call_id=_text(payload.get("user_id")), fields=fields, **common
        )
    if kind.startswith(_TRANSFER_PREFIX):
        fields = values(transferred_to=_text(payload.get("to_endpoint")))
        return Change(trigger="transfer", fields=fields, **common)
    # Unknown type: recorded on its call when it names one, else kept on the feed alone.
    return Change(trigger="note", call_id=_text(payload.get("user_id")), **common)


# --- What an authentic webhook may hold, made safe to store ------------------------------------

#: The key of ``data`` that says what was made safe, by path (``payload.error_msg: ...``).
SAFE_FORM = "telephonySafeForm"


def _parse(body: bytes) -> Any:
    """The body's JSON; nesting too deep for the parser is cut first (:func:`_clip_depth`)."""
    try:
        return json.loads(body)
    except RecursionError:
        return json.loads(_clip_depth(body.decode(), defaults.WEBHOOK_MAX_DEPTH + 1))


def _clip_depth(text: str, limit: int) -> str:
    """JSON ``text`` with every array or object nested deeper than ``limit`` replaced by the
    string ``"..."``: one pass, no recursion, so no depth can break it."""
    out: list[str] = []
    depth = skip = 0  # skip: depth inside a container being dropped (0: keeping)
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if skip or depth > limit:
                if not skip:
                    out.append('"..."')
                skip += 1
                continue
        elif char in "]}":
            depth -= 1
            if skip:
                skip -= 1
                continue
        if not skip:
            out.append(char)
    return "".join(out)


def plainly_safe(body: bytes) -> bool:
    """Whether the JSON of ``body`` is certainly in its safe form already, judged from the
    bytes alone (a few scans at C speed instead of a walk of every value: the hot path's
    usual webhook is a small, flat, ASCII object):

    - no string can be longer than the limit when the whole body is not;
    - no lone surrogate: JSON text holds one only as a ``\\u`` escape or as the bytes of an
      encoded surrogate (``json.loads`` decodes with ``surrogatepass``), which begin ``0xED``;
      no ``NUL``, which could make ``json.loads`` read the body as UTF-16 or UTF-32;
    - no nesting deeper than the limit when there are not that many brackets in all
      (brackets inside strings only make this stricter).

    ``False`` means only "look": :func:`safe_form` decides.
    """
    return (
        len(body) <= defaults.WEBHOOK_MAX_STRING
        and body.count(b"{") + body.count(b"[") <= defaults.WEBHOOK_MAX_DEPTH
        and b"\\u" not in body
        and b"\xed" not in body
        and b"\x00" not in body
    )


def safe_form(value: Any) -> tuple[Any, dict[str, str]]:
    """``value`` as it can be stored and read back exactly, and what was changed, by path."""
    changed: dict[str, str] = {}
    return _safe(value, "", 0, changed), changed


def _safe(value: Any, path: str, depth: int, changed: dict[str, str]) -> Any:
    if isinstance(value, str):
        text = value
        if not is_unicode(text):
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            changed[path] = "invalid Unicode replaced by U+FFFD"
        if len(text) > defaults.WEBHOOK_MAX_STRING:
            text = text[: defaults.WEBHOOK_MAX_STRING] + "..."
            changed[path] = f"cut to {defaults.WEBHOOK_MAX_STRING} characters"
        return text
    if not isinstance(value, dict | list):
        return value
    if depth >= defaults.WEBHOOK_MAX_DEPTH:
        changed[path] = f"nested deeper than {defaults.WEBHOOK_MAX_DEPTH} levels: dropped"
        return "..."
    if isinstance(value, list):
        return [_safe(item, f"{path}[{i}]", depth + 1, changed) for i, item in enumerate(value)]
    safe: dict[str, Any] = {}
    for key, item in value.items():
        name = _safe(key, f"{path}.<key>", depth, changed)
        safe[name] = _safe(item, f"{path}.{name}" if path else name, depth + 1, changed)
    return safe

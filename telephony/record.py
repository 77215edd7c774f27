"""The call record: every field of a call's Redis hash, its type, its encoding and its audience.

One definition, as rq's ``Job`` owns its hash (``to_dict`` / ``restore``): the store encodes
every write with :func:`encode` and decodes every read with :func:`decode`; nothing else names
a call-hash field (``apply.lua`` aside, which reads ``state``, ``room``, ``kind``,
``sessionId``, ``stopReason`` and ``transferredTo`` and writes ``id``, ``state``, ``sessionId``
and the times).

Encodings in Redis (hash values are byte strings):

- ``text``: the string, UTF-8.
- ``int``: decimal digits (``HINCRBY`` works on them).
- ``json``: JSON text, always, whatever the value: a string stays a string (``"123"`` is not
  read back as the number 123) and ``null`` stays ``null``. Inside a text the Lua script never
  decodes, integers keep every digit.
- ``time``: one format for every moment, the API's: ISO 8601 UTC with milliseconds and ``Z``
  (:func:`telephony.store.iso_time`); a UNIX time (float) given to :func:`encode` is converted.
- ``ms``: integer milliseconds since the epoch, for values that are ids as much as times
  (``watchDue`` names the watchdog job due then).

A field is ``shown`` in the API's call object, or kept for the workers (``internal``); the
contract's fields are ``always`` present, ``null`` when unknown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from typing import Any, Literal

Kind = Literal["text", "int", "json", "time", "ms"]


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    #: In the API's call object (else only with ``internal=True``: the workers' bookkeeping).
    shown: bool = True
    #: In every API call object, ``null`` (or the ``default``) when not recorded.
    always: bool = False
    #: What an ``always`` field shows when it is not recorded.
    default: Any = None
    doc: str = ""


FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("id", "text", always=True, doc="the call id (also the dial-out's userId; its key)"),
        Field("kind", "text", always=True, doc="dialout or dialin"),
        Field("room", "text", always=True, doc="the Daily room"),
        Field("destination", "text", always=True, doc="phone number or SIP URI (dial-in: from)"),
        Field("state", "text", always=True, doc="the machine's state"),
        Field("sessionId", "text", always=True, doc="Daily's session, once known"),
        Field("attempts", "int", always=True, default=0, doc="starts tried"),
        Field("error", "text", always=True, doc="why the last start or the call failed"),
        Field("reason", "text", always=True, doc="why the call ended"),
        Field("createdAt", "time", always=True, doc="when the call was created"),
        Field("updatedAt", "time", always=True, doc="when its state last changed"),
        Field("metadata", "json", always=True, default={}, doc="the caller's JSON, as given"),
        Field("options", "json", doc="the dial-out's Daily options"),
        Field("ringTimeoutSec", "int", doc="ring timeout asked for"),
        Field("maxDurationSec", "int", doc="maximum duration asked for"),
        # These two are true only while a call is queued: apply.lua removes them when it leaves.
        Field("nextAttemptAt", "time", doc="when a queued call's start is tried again"),
        Field("waitingFor", "text", doc="what a queued call waits for (only while it does)"),
        Field("answeredAt", "time", doc="when Daily reported the answer"),
        Field("endedAt", "time", doc="when the call ended"),
        # These two live until the call ends (apply.lua removes them: reason then says why).
        Field("stopRequested", "int", doc="1 once a stop was asked for"),
        Field("stopReason", "text", doc="the reason a requested stop ends the call with"),
        Field("transferRequested", "text", doc="the endpoint a transfer was asked to"),
        Field("transferredTo", "text", doc="the endpoint Daily reported transferring to"),
        Field("watchDue", "ms", shown=False, doc="due time of the current watchdog job"),
        Field("watchJob", "text", shown=False, doc="id of the current watchdog job"),
        Field("dialingSince", "time", shown=False, doc="when the latest start began"),
        Field("startJob", "text", shown=False, doc="id of the latest start job"),
    )
}

#: The contract's fields, in the contract's order: always in the API's call object.
ALWAYS = tuple(name for name, f in FIELDS.items() if f.always)


def attribute(name: str) -> str:
    """A field's name in Python (:class:`CallRecord`, :func:`values`): ``watchDue`` →
    ``watch_due``."""
    return re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), name)


#: Fields by their Python name.
BY_ATTRIBUTE: dict[str, Field] = {attribute(name): f for name, f in FIELDS.items()}


@dataclass(frozen=True)
class CallRecord:
    """A stored call as the workers and the domain read it: every field typed, by its Python
    name (times as stored: ISO text, ``watch_due`` in ms). The API's object is :func:`decode`."""

    id: str
    state: str
    kind: str | None = None
    room: str | None = None
    destination: str | None = None
    session_id: str | None = None
    attempts: int = 0
    error: str | None = None
    reason: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    metadata: Any = None
    options: Any = None
    ring_timeout_sec: int | None = None
    max_duration_sec: int | None = None
    next_attempt_at: str | None = None
    waiting_for: str | None = None
    answered_at: str | None = None
    ended_at: str | None = None
    stop_requested: int | None = None
    stop_reason: str | None = None
    transfer_requested: str | None = None
    transferred_to: str | None = None
    watch_due: int | None = None
    watch_job: str | None = None
    dialing_since: str | None = None
    start_job: str | None = None

    @classmethod
    def restore(cls, raw: Mapping[bytes, bytes], call_id: str) -> CallRecord:
        """The record of call ``call_id`` from its hash (``HGETALL``; the id is the key's, not
        a field); fields of a newer version are left out."""
        known = {f.name for f in dataclass_fields(cls)}
        found = {attribute(name): value for name, value in decode(raw, internal=True).items()}
        found["id"] = call_id
        return cls(**{name: value for name, value in found.items() if name in known})


@dataclass(frozen=True)
class Add:
    """An increment of an ``int`` field, for :func:`values`: ``values(attempts=Add(1))``."""

    by: int


def values(**given: Any) -> dict[str, Any]:
    """Fields to write, by Python name (``stop_requested=1``), under their stored names, for
    a :class:`~telephony.store.Change` or ``CallStore.mark``; :class:`Add` increments."""
    named: dict[str, Any] = {}
    for attr, value in given.items():
        name = BY_ATTRIBUTE[attr].name
        if isinstance(value, Add):
            named["+" + name] = value.by
        else:
            named[name] = value
    return named


class RecordError(ValueError):
    """A stored call that cannot be decoded (written by another version, or by hand)."""


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_value(name: str, value: Any) -> str | int:
    """``value`` of field ``name`` as stored; a ``KeyError`` for a field not defined here."""
    kind = FIELDS[name].kind
    if kind == "json":
        return json.dumps(value, separators=(",", ":"))
    if kind in ("int", "ms"):
        if type(value) is not int:
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        return value
    if kind == "time" and isinstance(value, int | float):
        return _iso(float(value))
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    return value


def encode(fields: Mapping[str, Any]) -> dict[str, str | int | None]:
    """Fields to write, as stored. ``None`` deletes a field (``apply.lua``), except for a
    ``json`` field, where it is the value ``null``; ``+name`` increments an ``int`` field."""
    stored: dict[str, str | int | None] = {}
    for name, value in fields.items():
        if name.startswith("+"):
            if FIELDS[name[1:]].kind != "int" or type(value) is not int:
                raise TypeError(f"{name}: only int fields are incremented, by an int")
            stored[name] = value
        elif value is None and FIELDS[name].kind != "json":
            stored[name] = None
        else:
            stored[name] = encode_value(name, value)
    return stored


def decode_value(name: str, raw: bytes | str) -> Any:
    """A stored value of field ``name``; :class:`RecordError` when it cannot be read."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    field = FIELDS.get(name)
    kind = field.kind if field else "text"  # a field of a newer version: shown as text
    try:
        if kind == "json":
            return json.loads(text)
        if kind in ("int", "ms"):
            return int(text)
    except (ValueError, RecursionError) as exc:
        raise RecordError(f"field {name} holds {text[:40]!r}: not {kind}") from exc
    return text


def stored_names(attributes: Sequence[str]) -> list[str]:
    """The stored names of fields given by their Python names (for ``HMGET``)."""
    return [BY_ATTRIBUTE[attr].name for attr in attributes]


def decode_fields(attributes: Sequence[str], raw: Sequence[bytes | None]) -> dict[str, Any]:
    """``HMGET``'s reply for the fields ``attributes`` (Python names), decoded, by Python
    name; ``None`` where a field is not recorded."""
    return {
        attr: None if value is None else decode_value(BY_ATTRIBUTE[attr].name, value)
        for attr, value in zip(attributes, raw, strict=True)
    }


def decode(raw: Mapping[bytes, bytes], internal: bool = False) -> dict[str, Any]:
    """A call's hash → the API's call object (with the workers' fields if ``internal``)."""
    call: dict[str, Any] = {name: _fresh(FIELDS[name].default) for name in ALWAYS}
    for raw_name, raw_value in raw.items():
        name = raw_name.decode()
        field = FIELDS.get(name)
        if field is not None and not field.shown and not internal:
            continue
        call[name] = decode_value(name, raw_value)
    return call


def _fresh(default: Any) -> Any:
    """A default the caller may change without changing the definition."""
    return dict(default) if isinstance(default, dict) else default

"""The shape of every webhook event the sandbox sends, exactly as daily-api.md tabulates it.

Payload builders live here and nowhere else, so a field rename is one edit and the tests can
hold the sandbox to the table field by field.

``user_id`` is the start's ``userId`` echoed back; a start without one gets ``dialout.*``
payloads without the key (not a made-up id, not ``null``): Daily documents no value for it,
and the absent key is the case a receiver that matches calls by ``user_id`` must survive.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

VERSION = "1.0.0"

CONNECTED = "dialout.connected"
ANSWERED = "dialout.answered"
STOPPED = "dialout.stopped"
WARNING = "dialout.warning"
ERROR = "dialout.error"
TRANSFER_TRIGGERED = "calltransfer.triggered"
TRANSFER_INITIATED = "calltransfer.initiated"
TRANSFER_ANSWERED = "calltransfer.answered"
TRANSFER_COMPLETED = "calltransfer.completed"

DIALOUT_TYPES = (CONNECTED, ANSWERED, STOPPED, WARNING, ERROR)
TRANSFER_TYPES = (TRANSFER_TRIGGERED, TRANSFER_INITIATED, TRANSFER_ANSWERED, TRANSFER_COMPLETED)

#: Every type ``POST /webhooks`` accepts in ``eventTypes``: Daily's documented list. The
#: sandbox only ever sends the dial-out and transfer ones.
KNOWN_TYPES = frozenset(
    (
        *DIALOUT_TYPES,
        *TRANSFER_TYPES,
        "dialin.ready",
        "dialin.connected",
        "dialin.stopped",
        "dialin.warning",
        "dialin.error",
        "meeting.started",
        "meeting.ended",
        "participant.joined",
        "participant.left",
        "waiting-participant.joined",
        "waiting-participant.left",
        "recording.started",
        "recording.ready-to-download",
        "recording.error",
        "transcript.started",
        "transcript.ready-to-download",
        "transcript.error",
        "streaming.started",
        "streaming.updated",
        "streaming.ended",
        "streaming.error",
        "batch-processor.job-finished",
        "batch-processor.error",
    )
)

#: The sandbox's Daily domain, in every payload and webhook object (fixed: deterministic).
DOMAIN_ID = "5a4db0c3-5a4d-4b0c-85a4-db0c35a4db0c"

#: The purchased number a PSTN dial-out calls from when the start names no ``callerId``:
#: ``caller_id`` is its id, ``origin`` its number (in the fictional 555-01xx range).
CALLER_ID = "c411e7d0-0000-4000-8000-5a4db0c35a4d"
ORIGIN_NUMBER = "+15550100199"

#: ``origin`` of a SIP dial-out: Daily's side of the SIP dialog.
ORIGIN_SIP = "sip:sandbox@sip.daily.co"

#: Body of the test request sent when a webhook is created or updated: no ``type``, so a
#: receiver that follows daily-api.md answers 200 and changes nothing.
TEST_BODY = json.dumps({"test": "test"}).encode()


@dataclass(frozen=True)
class Leg:
    """Who a dial-out event is about: the fields every ``dialout.*`` payload repeats."""

    session_id: str
    #: The start's ``userId``; ``None`` leaves ``user_id`` out of every payload.
    user_id: str | None
    domain_id: str
    room: str
    destination: str
    caller_id: str | None
    origin: str


@dataclass(frozen=True)
class Event:
    """One event as it happened; ``at`` is monotonic, for ordering in introspection."""

    type: str
    payload: dict[str, Any]
    id: str = field(default_factory=lambda: f"evt-{uuid.uuid4()}")
    at: float = field(default_factory=time.monotonic)

    def body(self) -> bytes:
        """The envelope as sent; ``event_ts`` is when this copy leaves, so it differs per try."""
        envelope = {
            "version": VERSION,
            "type": self.type,
            "id": self.id,
            "payload": self.payload,
            "event_ts": round(time.time(), 3),
        }
        return json.dumps(envelope, separators=(",", ":")).encode()


def _timestamp() -> str:
    """Daily documents an integer but sends whole seconds as a string."""
    return str(int(time.time()))


def dialout(type_: str, leg: Leg, error_msg: str | None = None) -> Event:
    payload: dict[str, Any] = {"timestamp": _timestamp(), "session_id": leg.session_id}
    if leg.user_id is not None:
        payload["user_id"] = leg.user_id
    payload |= {"domain_id": leg.domain_id, "room": leg.room}
    if type_ == ERROR:
        payload["error_msg"] = error_msg or ""
        return Event(type_, payload)
    payload |= {"destination": leg.destination, "caller_id": leg.caller_id}
    if type_ != WARNING:
        payload["origin"] = leg.origin
    return Event(type_, payload)


def transfer(
    type_: str, leg: Leg, *, mtg_session_id: str, to_endpoint: str, is_sip_refer: bool
) -> Event:
    payload = {
        "timestamp": _timestamp(),
        "session_id": leg.session_id,
        "mtg_session_id": mtg_session_id,
        "domain_id": leg.domain_id,
        "room": leg.room,
        "to_endpoint": to_endpoint,
        "from_endpoint": leg.destination,
        "is_sip_refer": is_sip_refer,
    }
    return Event(type_, payload)

"""Simulated dial-out sessions: each one plays its outcome's timeline and reacts to commands.

A session moves ``dialing → connected → answered → stopped | error`` as its events are
emitted; every emitted event is published to the webhooks at once, under the sessions lock,
so the webhooks' queues hold events in the order the session lived them. ``stop`` and
transfers cancel what is left of the timeline.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from telephony import defaults
from telephony.sandbox import errors, events
from telephony.sandbox.delivery import Dispatch
from telephony.sandbox.events import ANSWERED, CONNECTED, ERROR, STOPPED, Event, Leg
from telephony.sandbox.outcomes import Outcome, Step
from telephony.sandbox.scheduler import Scheduler
from telephony.store import now_iso

DIALING = "dialing"
LIVE = frozenset((DIALING, "connected", "answered"))
FINAL = {STOPPED: "stopped", ERROR: "error"}
STATE_AFTER = {CONNECTED: "connected", ANSWERED: "answered", **FINAL}

#: Daily's answer to a start in a room whose legs are all in use (undocumented by Daily:
#: ``../shared/daily-api.md``).
ROOM_FULL = "max SIP/PSTN sessions reached for this room"

#: Seconds (time scale 1.0) between ``dialOut/stop`` and its ``dialout.stopped``: Daily hangs
#: up asynchronously, after answering the request.
STOP_DELAY = 0.2

#: The webhooks of a transfer (time scale 1.0), ended by ``dialout.stopped`` for the old leg.
TRANSFER_STEPS = (
    Step(0.0, events.TRANSFER_TRIGGERED),
    Step(0.2, events.TRANSFER_INITIATED),
    Step(1.0, events.TRANSFER_ANSWERED),
    Step(1.2, events.TRANSFER_COMPLETED),
    Step(1.3, STOPPED),
)


@dataclass
class Session:
    leg: Leg
    outcome: Outcome
    created: float = field(default_factory=time.monotonic)
    state: str = DIALING
    #: Set by stop/transfer: the session takes no other command, though its end is pending.
    ending: bool = False
    #: Bumped to invalidate every step scheduled before.
    generation: int = 0
    sent: list[Event] = field(default_factory=list)
    held: list[Event] = field(default_factory=list)
    batches: int = 0
    dispatches: list[Dispatch] = field(default_factory=list)
    dtmf: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    #: When the leg joined the room (answered) and left it (ended), monotonic: presence.
    joined: float | None = None
    joined_at: str = ""
    left: float | None = None

    @property
    def id(self) -> str:
        return self.leg.session_id

    def snapshot(self) -> dict[str, Any]:
        return {
            "sessionId": self.id,
            "room": self.leg.room,
            "destination": self.leg.destination,
            "userId": self.leg.user_id,
            "outcome": self.outcome.name,
            "state": self.state,
            "t": self.created,
            "events": [
                {"id": e.id, "type": e.type, "t": e.at, "payload": dict(e.payload)}
                for e in self.sent
            ],
            "dtmf": [dict(d) for d in self.dtmf],
            "transfers": [dict(t) for t in self.transfers],
        }


def shuffled(session_id: str, batch: int, held: Sequence[Event]) -> list[Event]:
    """Every held event twice, in an order seeded by the session: never the true order."""
    copies = [event for event in held for _ in range(2)]
    random.Random(f"{session_id}:{batch}").shuffle(copies)
    later = next((i for i, event in enumerate(copies) if event is not held[0]), 0)
    return copies[later:] + copies[:later]  # lead with a later event: disorder always shows


class Sessions:
    def __init__(
        self,
        *,
        scheduler: Scheduler,
        publish: Callable[[Sequence[Event]], Dispatch],
        time_scale: float,
        room_legs: int = defaults.SANDBOX_ROOM_LEGS,
    ) -> None:
        self._scheduler = scheduler
        self._publish = publish
        self._scale = time_scale
        #: Legs allowed at once in one room (Daily's ``max_sip_pstn_sessions_per_room``).
        self.room_legs = room_legs
        self._sessions: dict[str, Session] = {}
        #: Each room's legs not yet ended (session ids), and the most it ever had at once.
        self._legs: dict[str, set[str]] = {}
        self._peak: dict[str, int] = {}
        self._meetings: dict[str, str] = {}
        self._lock = threading.RLock()

    # --- lifecycle -------------------------------------------------------------------------

    def place(
        self, room: str, destination: str, fields: dict[str, Any], outcome: Outcome
    ) -> Session:
        """A new session for a validated start body (calling its ``phoneNumber`` or
        ``sipUri``, ``destination``); its timeline starts now."""
        phone = fields.get("phoneNumber")
        leg = Leg(
            session_id=str(uuid.uuid4()),
            user_id=fields.get("userId"),
            domain_id=events.DOMAIN_ID,
            room=room,
            destination=destination,
            caller_id=(fields.get("callerId") or events.CALLER_ID) if phone else None,
            origin=events.ORIGIN_NUMBER if phone else events.ORIGIN_SIP,
        )
        session = Session(leg, outcome)
        with self._lock:
            legs = self._legs.setdefault(room, set())
            if len(legs) >= self.room_legs:
                raise errors.invalid(ROOM_FULL)
            legs.add(session.id)
            self._peak[room] = max(self._peak.get(room, 0), len(legs))
            self._sessions[session.id] = session
            self._schedule(session, outcome.steps, lambda step: self._emit(session, step))
        return session

    def wait_delivered(self, session: Session, timeout: float) -> bool:
        """Wait until everything ``session`` sent so far was delivered (or given up)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            dispatches = list(session.dispatches)
        return all(d.wait(max(0.0, deadline - time.monotonic())) for d in dispatches)

    def stop(self, room: str, session_id: str) -> None:
        with self._lock:
            session = self._live(room, session_id)
            if session is None:
                raise errors.not_found("No dialout to stop")
            self._end(session, (Step(STOP_DELAY, STOPPED),), lambda s: self._emit(session, s))

    def send_dtmf(self, room: str, fields: dict[str, Any]) -> None:
        with self._lock:
            session = self._live(room, fields["sessionId"])
            if session is None or session.state not in ("connected", "answered"):
                raise errors.not_found("No session running")
            session.dtmf.append(
                {
                    "tones": fields["tones"],
                    "digitDurationMs": fields.get("digitDurationMs"),
                    "method": fields.get("method"),
                    "t": time.monotonic(),
                }
            )

    def transfer(self, room: str, fields: dict[str, Any], *, refer: bool) -> None:
        """``sipCallTransfer`` / ``sipRefer``: the transfer's events, then the old leg stops."""
        with self._lock:
            session = self._live(room, fields["sessionId"])
            if session is None:
                raise errors.not_found("No session running")
            if session.state != "answered":
                raise errors.invalid(
                    "Call is not answered: only an answered call can be transferred"
                )
            to_endpoint = fields["toEndPoint"]
            session.transfers.append(
                {"toEndPoint": to_endpoint, "refer": refer, "t": time.monotonic()}
            )
            meeting = self._meetings.setdefault(room, str(uuid.uuid4()))

            def run(step: Step) -> None:
                if step.type == STOPPED:
                    self._emit(session, step)
                    return
                event = events.transfer(
                    step.type,
                    session.leg,
                    mtg_session_id=meeting,
                    to_endpoint=to_endpoint,
                    is_sip_refer=refer,
                )
                self._send(session, event)

            self._end(session, TRANSFER_STEPS, run)

    # --- introspection ---------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.snapshot() for s in self._sessions.values()]

    def rooms(self) -> dict[str, dict[str, int]]:
        """Each room's legs now and the most it had at once (introspection, not Daily's)."""
        with self._lock:
            return {
                room: {"legs": len(self._legs.get(room, ())), "peak": peak}
                for room, peak in self._peak.items()
            }

    def presence(self, room: str, lag: float, user_id: str | None = None) -> list[dict[str, Any]]:
        """Daily's ``GET /rooms/{room}/presence``: the legs in the room as Daily would report
        them ``lag`` seconds late: a leg shows once it has been answered for ``lag`` seconds,
        and still shows until ``lag`` seconds after it ended."""
        now = time.monotonic()
        with self._lock:
            sessions = [s for s in self._sessions.values() if s.leg.room == room]
        found = []
        for session in sessions:
            joined, left = session.joined, session.left
            if joined is None or now < joined + lag or (left is not None and now >= left + lag):
                continue
            if user_id is not None and session.leg.user_id != user_id:
                continue
            found.append({
                "room": room, "id": session.id, "userId": session.leg.user_id,
                "userName": session.leg.destination, "joinTime": session.joined_at,
                "duration": int(now - joined),
            })  # fmt: skip
        return found

    def rooms_presence(self, lag: float) -> dict[str, list[dict[str, Any]]]:
        """Daily's ``GET /presence``: every room's legs (as :meth:`presence`), by room;
        rooms with nobody present are left out."""
        with self._lock:
            rooms = sorted({s.leg.room for s in self._sessions.values()})
        found = {room: self.presence(room, lag) for room in rooms}
        return {room: legs for room, legs in found.items() if legs}

    def reset(self) -> None:
        with self._lock:
            for session in self._sessions.values():
                session.generation += 1
            self._sessions.clear()
            self._meetings.clear()
            self._legs.clear()
            self._peak.clear()

    # --- internals -------------------------------------------------------------------------

    def _live(self, room: str, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None or session.leg.room != room:
            return None
        if session.ending or session.state not in LIVE:
            return None
        return session

    def _end(self, session: Session, steps: Sequence[Step], run: Callable[[Step], None]) -> None:
        """Cancel the rest of the timeline and play ``steps`` as the session's end."""
        session.ending = True
        session.generation += 1
        self._schedule(session, steps, run)

    def _schedule(
        self, session: Session, steps: Sequence[Step], run: Callable[[Step], None]
    ) -> None:
        generation = session.generation
        for step in steps:
            if step.at <= 0:
                run(step)  # "before the start response": emitted now, not on the timer
                continue

            def fire(step: Step = step) -> None:
                with self._lock:
                    if session.generation == generation:
                        run(step)

            self._scheduler.call_later(step.at * self._scale, fire)

    def _emit(self, session: Session, step: Step) -> None:
        if session.state not in LIVE:
            return
        self._send(session, events.dialout(step.type, session.leg, step.error_msg))

    def _send(self, session: Session, event: Event) -> None:
        """Apply ``event`` to the session and publish it (held back when shuffling)."""
        session.state = STATE_AFTER.get(event.type, session.state)
        if event.type == ANSWERED and session.joined is None:
            session.joined, session.joined_at = time.monotonic(), now_iso()
        if event.type in FINAL:
            session.generation += 1
            self._legs.get(session.leg.room, set()).discard(session.id)
            if session.joined is not None and session.left is None:
                session.left = time.monotonic()
            if session.outcome.lose_final:
                return  # the leg is gone; Daily never tells (nor logs) it
        if not session.outcome.shuffle:
            batch = [event]
        else:
            session.held.append(event)
            if event.type not in (ANSWERED, *FINAL):
                return
            batch = shuffled(session.id, session.batches, session.held)
            session.batches += 1
            session.held.clear()
        session.sent.extend(batch)
        session.dispatches.append(self._publish(batch))

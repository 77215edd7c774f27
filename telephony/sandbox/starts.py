"""``dialOut/start`` as Daily decides it: validation, the rate limit, then the magic outcome.

The order matters and is Daily-like: a malformed request is refused before it can use any of
the rate limit, a 429 does not count either, and every start that passed the limiter counts
(even one the outcome then refuses or never answers), because it reached the dial-out
machinery. Every attempt is logged with its monotonic time, so tests can check the service's
pacing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from telephony import validation
from telephony.sandbox import errors
from telephony.sandbox.errors import ApiError
from telephony.sandbox.outcomes import NOT_HOSTING_ROOM, Outcome, outcome_for
from telephony.sandbox.ratelimit import LocalSlidingWindow
from telephony.sandbox.sessions import Session, Sessions


def hosting_room(room: str) -> str:
    """The validated room name of a ``/rooms/{room}/...`` path, if it hosts a call."""
    name = errors.validated(validation.room_name, room)
    if name == NOT_HOSTING_ROOM:
        raise errors.not_found("Room is not hosting a call")
    return name


@dataclass
class Attempt:
    """One start request as the introspection endpoint shows it."""

    t: float
    room: str
    user_id: str | None = None
    destination: str | None = None
    outcome: str | None = None
    counted: bool = False
    status: int | None = None
    session_id: str | None = None
    dropped: bool = False
    #: Never answered and nothing placed (the ``hang`` outcome): ``status`` stays ``None``.
    hung: bool = False
    #: Why a hung start's request ended (:mod:`telephony.sandbox.holds`); ``None`` while held.
    released: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "room": self.room,
            "userId": self.user_id,
            "destination": self.destination,
            "outcome": self.outcome,
            "counted": self.counted,
            "status": self.status,
            "sessionId": self.session_id,
            "dropped": self.dropped,
            "hung": self.hung,
            "released": self.released,
        }


class Unanswered(Exception):
    """A start Daily never answers and that placed no call: the app holds its request open."""

    def __init__(self, attempt: Attempt, outcome: Outcome) -> None:
        super().__init__(f"start to {attempt.destination} is never answered")
        self.attempt = attempt
        self.outcome = outcome


class StartDesk:
    def __init__(self, limiter: LocalSlidingWindow, sessions: Sessions) -> None:
        self.limiter = limiter
        self._sessions = sessions
        self._attempts: list[Attempt] = []
        self._refused: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def start(self, room: str, raw: bytes) -> Session:
        """Place a call for a start request, or raise the :class:`ApiError` Daily answers
        (:class:`Unanswered` when it answers nothing and places nothing)."""
        attempt = Attempt(t=time.monotonic(), room=room)
        with self._lock:
            self._attempts.append(attempt)
        try:
            session = self._start(attempt, room, raw)
        except ApiError as exc:
            attempt.status = exc.status
            raise
        except Unanswered:
            attempt.hung = True
            raise
        attempt.session_id = session.id
        attempt.dropped = session.outcome.drop
        attempt.status = None if session.outcome.drop else 200
        return session

    def _start(self, attempt: Attempt, room: str, raw: bytes) -> Session:
        data = errors.parse_json(raw)
        room = hosting_room(room)
        if isinstance(data, dict):  # logged even when the body is then refused
            attempt.user_id = _str_or_none(data.get("userId"))
            attempt.destination = _str_or_none(data.get("phoneNumber") or data.get("sipUri"))
        fields = errors.validated(validation.dialout_body, data)
        destination: str = fields.get("phoneNumber") or fields["sipUri"]
        outcome = outcome_for(destination)
        attempt.outcome = outcome.name
        counted_at = self.limiter.acquire()
        if counted_at is None:
            raise ApiError(
                429,
                errors.RATE_LIMIT,
                f"Too many dial-out starts: more than {self.limiter.limit} (sliding window)",
            )
        attempt.counted = True
        attempt.t = counted_at  # exactly the time the limiter counted
        self._refuse(outcome, fields.get("userId") or destination)
        if outcome.hang:
            raise Unanswered(attempt, outcome)
        return self._sessions.place(room, destination, fields, outcome)

    def _refuse(self, outcome: Outcome, key: str) -> None:
        """Raise the outcome's refusal, if this start is one of those it refuses."""
        if outcome.refusal is None:
            return
        if outcome.refusals:
            with self._lock:
                seen = self._refused.get((outcome.name, key), 0)
                if seen >= outcome.refusals:
                    return
                self._refused[(outcome.name, key)] = seen + 1
        refusal = outcome.refusal
        raise ApiError(refusal.status, refusal.error, refusal.info)

    def attempts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a.to_json() for a in self._attempts]

    def reset(self) -> None:
        with self._lock:
            self._attempts.clear()
            self._refused.clear()
        self.limiter.reset()


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None

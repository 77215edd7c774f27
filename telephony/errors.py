"""Every error a call to Daily's REST API can end in, as one tree callers can act on.

Modelled on httpx's ``_exceptions.py``: the tree is the documentation. Workers decide by class,
never by parsing text::

    DailyError
    ├── DailyRequestError           the exchange did not complete
    │   ├── DailyConnectError       nothing was sent (connect failed/timed out): safe to retry
    │   └── DailyAmbiguousError     sent, then timed out or dropped: Daily may have acted
    └── DailyAPIError               Daily answered with an error status
        ├── InvalidRequestError     400 invalid-request-error / json-parsing-error: never retry
        ├── AuthenticationError     401/403: bad or missing API key; never retry
        ├── NotAllowedError         NOT_ALLOWED: dial-out/PSTN not enabled; never retry
        ├── NotFoundError           404: no such room, session or webhook
        ├── DialoutInProgressError  DIALOUT_IN_PROGRESS / "dialOut already started"
        ├── RoomFullError           the room's SIP/PSTN legs are all in use: wait for one to end
        └── RetryableError          worth another try after a pause
            ├── TemporarilyNotAvailableError   TEMPORARILY_NOT_AVAILABLE (any status)
            ├── RateLimitedError               429, with Daily's delay when it gives one
            └── ServerError                    5xx

Classification goes by the error *name* in Daily's body first (Daily does not document which
status carries ``TEMPORARILY_NOT_AVAILABLE``), then by status: see :func:`classify`.
"""

from __future__ import annotations

from typing import Any


class DailyError(Exception):
    """Base of everything raised by :class:`telephony.daily.DailyClient`."""

    #: Whether repeating the same request later can succeed.
    retryable: bool = False


class DailyRequestError(DailyError):
    """The HTTP exchange with Daily did not complete."""

    retryable = True


class DailyConnectError(DailyRequestError):
    """Connecting failed or timed out: the request never left, so retrying is always safe."""


class DailyAmbiguousError(DailyRequestError):
    """The request was sent but no answer came (read timeout, dropped connection).

    For a dial-out start this is *not* proof that no call was placed: the caller must look for
    a webhook carrying the call's ``user_id`` before dialling again.
    """


class DailyAPIError(DailyError):
    """Daily answered with an error status; ``type`` and ``info`` come from its JSON body."""

    def __init__(
        self,
        status: int,
        type: str | None = None,
        info: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.info = info
        self.body = body
        self.retry_after = retry_after
        super().__init__(f"{status} {type or 'error'}: {info or ''}".rstrip(": "))


class InvalidRequestError(DailyAPIError):
    """The body or path was refused as invalid: the same request will always fail."""


class AuthenticationError(DailyAPIError):
    """The API key is missing, wrong, or not allowed to do this."""


class NotAllowedError(DailyAPIError):
    """SIP/PSTN dial-out is not enabled for this room or domain (``NOT_ALLOWED``)."""


class NotFoundError(DailyAPIError):
    """No such room hosting a call, no running session, or no such webhook."""


class DialoutInProgressError(DailyAPIError):
    """Another dial-out is being started in the room; it may be retried after a pause."""

    retryable = True


class RoomFullError(DailyAPIError):
    """The room already has as many SIP/PSTN legs as it allows (Daily's
    ``max_sip_pstn_sessions_per_room``, 5 by default): no call was placed, and the same start
    succeeds once a leg of that room has ended. A start refused so waits; it is not a failure.
    """

    retryable = True


class RetryableError(DailyAPIError):
    """Daily could not serve the request now; the same request may succeed later."""

    retryable = True


class TemporarilyNotAvailableError(RetryableError):
    """``TEMPORARILY_NOT_AVAILABLE``: no dial-out workers free, Daily is scaling up."""


class RateLimitedError(RetryableError):
    """429: over Daily's rate limit; ``retry_after`` is set when Daily sent a delay."""


class ServerError(RetryableError):
    """5xx from Daily without a more specific name."""


#: Error names Daily puts in ``error`` or ``info``, checked before the status code.
_NAMED: tuple[tuple[str, type[DailyAPIError]], ...] = (
    ("TEMPORARILY_NOT_AVAILABLE", TemporarilyNotAvailableError),
    ("NOT_ALLOWED", NotAllowedError),
    ("DIALOUT_IN_PROGRESS", DialoutInProgressError),
    ("dialOut already started", DialoutInProgressError),
    ("rate-limit-error", RateLimitedError),
    # Undocumented by Daily; the text is the sandbox's (../shared/daily-api.md).
    ("max SIP/PSTN sessions", RoomFullError),
)

_BY_TYPE: dict[str, type[DailyAPIError]] = {
    "invalid-request-error": InvalidRequestError,
    "json-parsing-error": InvalidRequestError,
    "authentication-error": AuthenticationError,
    "authorization-header-error": AuthenticationError,
    "forbidden-error": AuthenticationError,
    "not-found-error": NotFoundError,
    "server-error": ServerError,
}


def classify(status: int, type: str | None, info: str | None) -> type[DailyAPIError]:
    """The exception class for an error answer: by name in the body, then by status."""
    text = f"{type or ''} {info or ''}"
    for name, cls in _NAMED:
        if name in text:
            return cls
    if status == 429:
        return RateLimitedError
    if status >= 500:
        return ServerError
    if status == 404:
        return NotFoundError
    if status in (401, 403):
        return AuthenticationError
    if type in _BY_TYPE:
        return _BY_TYPE[type]
    return InvalidRequestError

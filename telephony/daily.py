"""The client for Daily's REST API: dial-out control and webhook management.

Every failure ends in one class of :mod:`telephony.errors`, so workers decide by class. The one
distinction that matters most is *sent or not*: a start that never left (``DailyConnectError``)
may be repeated at once, a start that left and got no readable answer (``DailyAmbiguousError``)
may already be ringing someone. Hence no hidden retries anywhere (``max_retries=0``, no
redirects), and "ambiguous" whenever the evidence does not prove that nothing was sent.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from telephony import defaults
from telephony.config import ConfigError, Secret
from telephony.errors import (
    DailyAmbiguousError,
    DailyAPIError,
    DailyConnectError,
    classify,
)
from telephony.validation import camel

if TYPE_CHECKING:
    from telephony.config import Settings

__all__ = ["DailyClient"]

log = logging.getLogger(__name__)

#: Evidence that the request (or part of it) reached the server: a status line was awaited or
#: the connection died mid-exchange. Any of these anywhere in the cause chain wins.
_SENT: tuple[type[BaseException], ...] = (
    requests.ReadTimeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    http.client.HTTPException,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)

#: Evidence that the TCP connection was never established, so no byte of the request left.
#: ``NewConnectionError`` (refused, unreachable, DNS) subclasses ``ConnectTimeoutError``.
_NOT_SENT: tuple[type[BaseException], ...] = (
    requests.ConnectTimeout,
    urllib3.exceptions.ConnectTimeoutError,
    ConnectionRefusedError,
)

#: What a request can raise besides our own errors; all of it is mapped by :func:`_was_sent`.
_TRANSPORT: tuple[type[Exception], ...] = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


def _was_sent(exc: BaseException) -> bool:
    """False only when the cause chain proves the connection was never made.

    requests blurs the line (``ConnectTimeout`` is also a ``ConnectionError``; a
    ``ConnectionError`` wraps both a refused connect and a reset mid-response), so the whole
    chain is walked: ``__cause__``, ``__context__``, urllib3's ``reason`` and exception args.
    """
    not_sent = False
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _SENT):
            return True
        if isinstance(current, _NOT_SENT):
            not_sent = True
        linked = (current.__cause__, current.__context__, getattr(current, "reason", None))
        stack.extend(e for e in (*linked, *current.args) if isinstance(e, BaseException))
    return not not_sent


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _api_error(response: requests.Response) -> DailyAPIError:
    """The exception for a non-2xx answer, whatever its body looks like."""
    body: Any
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())[: defaults.DAILY_ERROR_TEXT_MAX]
        body = text or None
    if isinstance(body, dict):
        type_, info = _text(body.get("error")), _text(body.get("info"))
    else:
        type_, info = None, (_text(body) or response.reason or None)
    cls = classify(response.status_code, type_, info)
    retry_after = _retry_after(response.headers.get("Retry-After"), time.time())
    return cls(response.status_code, type_, info, body, retry_after)


def _reveal(value: Secret | str) -> str:
    return value.reveal() if isinstance(value, Secret) else value


def _fields(**fields: Any) -> dict[str, Any]:
    """Daily's body from keyword arguments: camelCase names, unset (``None``) ones left out."""
    return {camel(key): value for key, value in fields.items() if value is not None}


class _BearerAuth(requests.auth.AuthBase):
    """Adds the API key at the last moment; the key stays a :class:`Secret` until then."""

    def __init__(self, key: Secret) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._key.reveal()}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(**********)"


class DailyClient:
    """Daily's REST API for one process: threads share its connection pool.

    ``read_timeout`` applies to each socket read, not to the whole exchange.
    """

    def __init__(
        self,
        base_url: str,
        api_key: Secret | str,
        *,
        connect_timeout: float = defaults.DAILY_CONNECT_TIMEOUT,
        read_timeout: float = defaults.DAILY_READ_TIMEOUT,
        pool_size: int = defaults.DAILY_POOL_SIZE,
        session: requests.Session | None = None,
    ) -> None:
        base_url = base_url.rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"Daily API URL must be http(s)://host/..., got {base_url!r}")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("Daily timeouts must be positive")
        if pool_size < 1:
            raise ValueError("Daily pool size must be at least 1")
        key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        if not key:
            raise ValueError("Daily API key is empty")
        self.base_url = base_url
        self.timeout = (connect_timeout, read_timeout)
        self._auth = _BearerAuth(key)
        self._owns_session = session is None
        self._session = requests.Session() if session is None else session
        # Mounted on the API's own prefix, so a caller's session keeps its adapters for other
        # hosts but can never add retries to ours (a retried start could ring someone twice).
        self._adapter = HTTPAdapter(
            pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0
        )
        self._session.mount(base_url + "/", self._adapter)

    @classmethod
    def from_settings(cls, settings: Settings) -> DailyClient:
        if not settings.daily_api_key:
            raise ConfigError("DAILY_API_KEY is not set")
        return cls(
            settings.daily_api_url,
            settings.daily_api_key,
            read_timeout=settings.daily_read_timeout,
        )

    def __repr__(self) -> str:
        return f"DailyClient({self.base_url!r})"

    def __enter__(self) -> DailyClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drop pooled connections; a session passed in by the caller stays open."""
        if self._owns_session:
            self._session.close()
        else:
            self._adapter.close()

    # --- dial-out ------------------------------------------------------------------------------

    def start_dialout(self, room: str, body: Mapping[str, Any]) -> str:
        """Start a dial-out; its ``sessionId``. ``body`` is sent exactly as given.

        A 2xx answer without a readable ``sessionId`` is ambiguous: Daily may be dialling a
        session we cannot name.
        """
        path = f"/rooms/{quote(room, safe='')}/dialOut/start"
        data = self._json("POST", path, dict(body))
        session_id = data.get("sessionId") if isinstance(data, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise DailyAmbiguousError(f"POST {path}: answered without a sessionId")
        return session_id

    def stop_dialout(self, room: str, session_id: str) -> None:
        self._send(
            "POST", f"/rooms/{quote(room, safe='')}/dialOut/stop", _fields(session_id=session_id)
        )

    def send_dtmf(
        self,
        room: str,
        session_id: str,
        tones: str,
        *,
        digit_duration_ms: int | None = None,
        method: str | None = None,
    ) -> None:
        body = _fields(
            session_id=session_id, tones=tones, digit_duration_ms=digit_duration_ms, method=method
        )
        self._send("POST", f"/rooms/{quote(room, safe='')}/dialOut/sendDTMF", body)

    def sip_call_transfer(
        self,
        room: str,
        session_id: str,
        to_end_point: str,
        *,
        caller_id: str | None = None,
        extension: str | None = None,
        wait_before_extension_dial_sec: int | None = None,
    ) -> None:
        body = _fields(
            session_id=session_id,
            to_end_point=to_end_point,
            caller_id=caller_id,
            extension=extension,
            wait_before_extension_dial_sec=wait_before_extension_dial_sec,
        )
        self._send("POST", f"/rooms/{quote(room, safe='')}/sipCallTransfer", body)

    def sip_refer(self, room: str, session_id: str, to_end_point: str) -> None:
        body = _fields(session_id=session_id, to_end_point=to_end_point)
        self._send("POST", f"/rooms/{quote(room, safe='')}/sipRefer", body)

    # --- read-back ------------------------------------------------------------------------------

    def presence(self) -> dict[str, list[dict[str, Any]]]:
        """Who is in every room of the domain now (``GET /presence``: room → participants,
        up to about 15 s late), in one request whatever the number of calls."""
        data = self._json("GET", "/presence")
        if not isinstance(data, dict) or not all(
            isinstance(legs, list) and all(isinstance(leg, dict) for leg in legs)
            for legs in data.values()
        ):
            raise DailyAmbiguousError("GET /presence: answer is not a map of rooms to participants")
        return data

    # --- webhooks ------------------------------------------------------------------------------

    def list_webhooks(self) -> list[dict[str, Any]]:
        """Every webhook of the domain (Daily answers an array; ``{"data": [...]}`` is accepted)."""
        data = self._json("GET", "/webhooks")
        if isinstance(data, dict):
            data = data.get("data")
        if not isinstance(data, list) or not all(isinstance(hook, dict) for hook in data):
            raise DailyAmbiguousError("GET /webhooks: answer is not a list of webhooks")
        return data

    def webhook_log(self, limit: int, starting_after: str | None = None) -> list[dict[str, Any]]:
        """One page of Daily's webhook delivery log (``GET /logs/api?source=webhook``), newest
        first; a bare array and a ``{"data": [...]}`` wrapper are both accepted."""
        query = f"source=webhook&limit={limit}"
        if starting_after:
            query += f"&starting_after={quote(starting_after, safe='')}"
        data = self._json("GET", f"/logs/api?{query}")
        if isinstance(data, dict):
            data = data.get("data")
        if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
            raise DailyAmbiguousError("GET /logs/api: answer is not a list of log entries")
        return data

    def get_webhook(self, uuid: str) -> dict[str, Any]:
        return self._object("GET", f"/webhooks/{quote(uuid, safe='')}")

    def create_webhook(
        self,
        url: str,
        *,
        hmac: Secret | str | None = None,
        event_types: Sequence[str] | None = None,
        retry_type: str | None = None,
        basic_auth: Secret | str | None = None,
    ) -> dict[str, Any]:
        """Register ``url``; Daily first POSTs a test request there and needs a 200 back."""
        body = _fields(
            url=url,
            hmac=None if hmac is None else _reveal(hmac),
            event_types=None if event_types is None else list(event_types),
            retry_type=retry_type,
            basic_auth=None if basic_auth is None else _reveal(basic_auth),
        )
        return self._object("POST", "/webhooks", body)

    def update_webhook(self, uuid: str, **fields: Any) -> dict[str, Any]:
        """Change fields (Daily's names or snake_case); also re-activates a FAILED webhook."""
        body = _fields(**{k: _reveal(v) if isinstance(v, Secret) else v for k, v in fields.items()})
        return self._object("POST", f"/webhooks/{quote(uuid, safe='')}", body)

    def delete_webhook(self, uuid: str) -> None:
        self._send("DELETE", f"/webhooks/{quote(uuid, safe='')}")

    def ensure_webhook(
        self,
        url: str,
        hmac: Secret | str,
        *,
        event_types: Sequence[str] | None = None,
        retry_type: str | None = None,
        basic_auth: Secret | str | None = None,
    ) -> dict[str, Any]:
        """The webhook for ``url``, active and with these settings, touching Daily only if needed.

        Safe to run on every deploy: an existing one is reused (updated only where it differs,
        re-activated unless ``ACTIVE``), otherwise one is created. Fields left ``None`` are not
        compared.
        """
        secret = _reveal(hmac)
        for hook in self.list_webhooks():
            if hook.get("url") != url:
                continue
            changes: dict[str, Any] = {}
            current = hook.get("hmac")
            if not isinstance(current, str) or not secrets.compare_digest(current, secret):
                changes["hmac"] = secret
            if event_types is not None and sorted(hook.get("eventTypes") or []) != sorted(
                event_types
            ):
                changes["eventTypes"] = list(event_types)
            if retry_type is not None and hook.get("retryType") != retry_type:
                changes["retryType"] = retry_type
            if basic_auth is not None and hook.get("basicAuth") != _reveal(basic_auth):
                changes["basicAuth"] = _reveal(basic_auth)
            if not changes and hook.get("state", "ACTIVE") == "ACTIVE":
                return hook
            uuid = hook.get("uuid")
            if not isinstance(uuid, str) or not uuid:
                raise DailyAmbiguousError("GET /webhooks: a webhook without a uuid")
            return self.update_webhook(uuid, url=url, **changes)
        return self.create_webhook(
            url, hmac=secret, event_types=event_types, retry_type=retry_type, basic_auth=basic_auth
        )

    # --- transport -----------------------------------------------------------------------------

    def _object(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = self._json(method, path, body)
        if not isinstance(data, dict):
            raise DailyAmbiguousError(f"{method} {path}: answer is not a JSON object")
        return data

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The decoded 2xx body; unreadable means we do not know what Daily did."""
        response = self._send(method, path, body)
        try:
            return response.json()
        except ValueError:
            raise DailyAmbiguousError(f"{method} {path}: answer is not JSON") from None

    def _send(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> requests.Response:
        """One exchange, no retries; raises the :mod:`telephony.errors` class for any failure."""
        started = time.perf_counter()
        try:
            response = self._session.request(
                method,
                self.base_url + path,
                json=body,
                auth=self._auth,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except _TRANSPORT as exc:
            elapsed = (time.perf_counter() - started) * 1000
            sent = _was_sent(exc)
            log.debug("daily %s %s -> %s after %.1f ms", method, path, type(exc).__name__, elapsed)
            if sent:
                raise DailyAmbiguousError(
                    f"{method} {path}: {type(exc).__name__} after the request was sent;"
                    " Daily may have acted on it"
                ) from exc
            raise DailyConnectError(
                f"{method} {path}: {type(exc).__name__} before anything was sent"
            ) from exc
        elapsed = (time.perf_counter() - started) * 1000
        log.debug("daily %s %s -> %d in %.1f ms", method, path, response.status_code, elapsed)
        if not 200 <= response.status_code < 300:
            raise _api_error(response)
        return response

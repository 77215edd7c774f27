"""``telephony.web.asgi:create_app``: the production entry point, where no slow client holds
a thread.

Under WSGI a request's body is read by the thread that runs the app, so N clients trickling
bodies held N threads and four of them starved the webhook receiver (Daily's breaker trips).
Granian reads headers itself (and times slow ones out), but has no body-read timeout. This
ASGI front reads every body on the event loop first, with a deadline and the size limit:

- ``Content-Length`` over the route's limit: 413 at once, nothing read; a chunked body is
  counted while it arrives and refused (413) once over the limit;
- a body not complete within ``BODY_READ_TIMEOUT``: 408 with ``Connection: close``;
- then ``POST /webhooks/daily`` is verified and committed right on the loop (an HMAC and one
  Redis round trip: measured fastest, see ``../shared/design.md``, "Slow clients"), unless the
  spool holds webhooks (its fsync then takes milliseconds: off the loop, in the pool);
- every other request runs the unchanged Flask app in a small thread pool, its body already
  in memory.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask

from telephony import defaults
from telephony.config import Settings
from telephony.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER
from telephony.web import create_app as create_flask_app
from telephony.web import webhooks
from telephony.web.bodies import limit_for
from telephony.web.context import Services
from telephony.web.errors import error_body

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: (status, headers, body) of a finished response.
Response = tuple[int, list[tuple[bytes, bytes]], bytes]


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    """The client disconnected before its body was in."""


def create_app(settings: Settings | None = None) -> Front:
    """The ASGI app granian runs (``--interface asgi --factory``); ``TELEPHONY_WEB_THREADS``
    sizes the pool that runs the Flask app (``telephony serve --threads``)."""
    threads = int(os.environ.get("TELEPHONY_WEB_THREADS") or defaults.WEB_THREADS)
    return Front(create_flask_app(settings), threads)


class Front:
    """Buffers each body on the event loop, then answers (see the module's docstring)."""

    def __init__(self, app: Flask, threads: int = defaults.WEB_THREADS) -> None:
        self.app = app
        self.services: Services = app.extensions["telephony"]
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.pool.shutdown(wait=False)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        webhook = scope["path"] == webhooks.PATH
        limit = limit_for(scope["path"])
        headers = _wanted(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and not declared.isdigit():
            await _send(send, _json(400, error_body(400, "invalid Content-Length")), close=True)
            return
        if declared is not None and int(declared) > limit:
            await _send(send, _too_large(limit), close=True)
            return
        try:
            async with asyncio.timeout(defaults.BODY_READ_TIMEOUT):  # no task, unlike wait_for
                body = await _read(receive, limit)
        except _TooLarge:
            await _send(send, _too_large(limit), close=True)
            return
        except TimeoutError:
            info = f"request body not received within {defaults.BODY_READ_TIMEOUT:g} s"
            await _send(send, _json(408, error_body(408, info)), close=True)
            return
        except _Gone:
            return
        spool = self.services.receiver.spool
        if webhook and scope["method"] == "POST" and not (spool is not None and spool.busy):
            timestamp, sig = headers.get(_TIMESTAMP), headers.get(_SIGNATURE)
            status, payload, extra = webhooks.answer(self.services, body, timestamp, sig)
            await _send(send, _json(status, payload, extra))
            return
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(self.pool, self._wsgi, scope, body)
        await _send(send, response, head=scope["method"] == "HEAD")

    def _wsgi(self, scope: Scope, body: bytes) -> Response:
        """Run the Flask app on a pool thread with the body already in memory."""
        status_line = ""
        response_headers: list[tuple[str, str]] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            nonlocal status_line, response_headers
            status_line, response_headers = status, headers
            return lambda data: None

        chunks: Iterable[bytes] = self.app(_environ(scope, body), start_response)
        try:
            content = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return int(status_line.split(" ", 1)[0]), _encoded(response_headers), content


async def _read(receive: Receive, limit: int) -> bytes:
    """The whole body, refused as soon as it is over ``limit``."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


_TIMESTAMP = TIMESTAMP_HEADER.lower().encode()
_SIGNATURE = SIGNATURE_HEADER.lower().encode()
_WANTED = frozenset({b"content-length", _TIMESTAMP, _SIGNATURE})


def _wanted(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """The few headers the front itself reads (the hot path decodes no others)."""
    return {name.lower(): value.decode("latin-1") for name, value in raw if name.lower() in _WANTED}


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (repeated ones joined with commas, as WSGI does)."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        found[name] = f"{found[name]},{value}" if name in found else value
    return found


def _environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """The WSGI environ of an ASGI HTTP request (PEP 3333), its body already read."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in _headers(scope).items():
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name not in ("content-length", "transfer-encoding"):  # the body is read whole
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def _json(status: int, payload: dict[str, Any], extra: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), *_encoded((extra or {}).items())]
    return status, headers, body


def _encoded(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _too_large(limit: int) -> Response:
    return _json(413, error_body(413, f"request body over {limit} bytes"))


async def _send(send: Send, response: Response, close: bool = False, head: bool = False) -> None:
    """Send a whole response; a HEAD answer keeps the app's ``Content-Length`` (its GET's)."""
    status, headers, body = response
    if not head:
        headers = [(k, v) for k, v in headers if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

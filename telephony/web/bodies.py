"""Request bodies bounded by their route's limit, however they arrive (WSGI servers).

A body with a ``Content-Length`` over the limit is refused by Flask before it is read. A
chunked body has no length up front, and werkzeug silently cuts such a stream at
``max_content_length``: a body over the limit could be read truncated and, when the cut fell
after valid JSON, accepted. This middleware reads a chunked body up to one byte past the
route's limit first: over it, 413 and nothing else runs; within it, the app sees an ordinary
body with its ``Content-Length``. (``telephony serve``'s ASGI front counts bodies itself.)
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from telephony import defaults
from telephony.web.errors import error_body

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def limit_for(path: str) -> int:
    """The largest body a route accepts: Daily's webhooks are small; ``/v1`` bodies larger."""
    from telephony.web.webhooks import PATH

    return defaults.WEBHOOK_MAX_BYTES if path == PATH else defaults.API_MAX_BYTES


class BoundedBodies:
    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if (
            environ.get("CONTENT_LENGTH")
            or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        ):
            return self.app(environ, start_response)
        limit = limit_for(environ.get("PATH_INFO", ""))
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            payload = json.dumps(error_body(413, f"request body over {limit} bytes")).encode()
            start_response("413 Request Entity Too Large", [
                ("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                ("Connection", "close")])  # fmt: skip
            return [payload]
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input_terminated"] = False
        return self.app(environ, start_response)

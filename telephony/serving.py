"""A WSGI app on a background thread: the sandbox, the demo's helpers and the tests use it.

Production traffic goes through granian (``telephony serve``); this is werkzeug's threaded
server, which needs no extra process and starts in milliseconds.
"""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class QuietRequestHandler(WSGIRequestHandler):
    """No access log: tests start many servers and read what they recorded instead."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class ServerThread:
    """Serve ``app`` on ``host:port`` (0 = a free port) until :meth:`stop`."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        request_handler: type[WSGIRequestHandler] | None = None,
    ) -> None:
        # threaded=True is werkzeug's ThreadedWSGIServer: its request threads are daemons.
        self.server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=request_handler
        )
        self.host = host
        self.port: int = self.server.server_port
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

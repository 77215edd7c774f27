"""Running the sandbox: the :class:`Sandbox` object for tests and the demo, and the CLI verb.

werkzeug's threaded server in a background thread: every request gets its own thread, so a
``slow`` start or a webhook test request never blocks the rest of the API.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from telephony import defaults
from telephony.config import ConfigError, RateLimit
from telephony.sandbox.app import create_app
from telephony.sandbox.core import SandboxCore
from telephony.sandbox.delivery import Disorder
from telephony.sandbox.errors import ApiError
from telephony.serving import QuietRequestHandler, ServerThread

log = logging.getLogger(__name__)


DEFAULT_RATE_LIMIT = RateLimit.parse(defaults.DIALOUT_LIMIT)


class Sandbox:
    """A running stand-in for Daily's REST API that sends signed webhooks."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = defaults.SANDBOX_API_KEY,
        time_scale: float = 1.0,
        rate_limit: RateLimit = DEFAULT_RATE_LIMIT,
        test_request_timeout: float = defaults.SANDBOX_TEST_REQUEST_TIMEOUT,
        delivery_timeout: float = defaults.SANDBOX_DELIVERY_TIMEOUT,
        *,
        log_requests: bool = False,
        presence_lag: float = defaults.SANDBOX_PRESENCE_LAG,
        room_legs: int = defaults.SANDBOX_ROOM_LEGS,
        disorder: Disorder | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.core = SandboxCore(
            api_key=api_key,
            time_scale=time_scale,
            rate_limit=rate_limit,
            test_request_timeout=test_request_timeout,
            delivery_timeout=delivery_timeout,
            presence_lag=presence_lag,
            room_legs=room_legs,
            disorder=disorder,
        )
        self._log_requests = log_requests
        self._server: ServerThread | None = None

    @property
    def api_key(self) -> str:
        return self.core.api_key.reveal()

    @property
    def base_url(self) -> str:
        """``http://host:port`` (introspection lives under ``/_sandbox``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Daily's API base, for ``DAILY_API_URL``."""
        return f"{self.base_url}/v1"

    def start(self) -> Sandbox:
        handler = None if self._log_requests else QuietRequestHandler
        self._server = ServerThread(create_app(self.core), self.host, self.port, handler).start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.core.close()

    # --- introspection, the same data as /_sandbox/* ----------------------------------------

    def starts(self) -> list[dict[str, Any]]:
        return self.core.desk.attempts()

    def sessions(self) -> list[dict[str, Any]]:
        return self.core.sessions.snapshot()

    def rooms(self) -> dict[str, dict[str, int]]:
        return self.core.sessions.rooms()

    def deliveries(self) -> list[dict[str, Any]]:
        return self.core.deliveries.entries()

    def webhooks(self) -> list[dict[str, Any]]:
        return self.core.webhooks.list()

    def register_webhook(self, url: str, hmac: str | None = None, **fields: Any) -> dict[str, Any]:
        """``POST /webhooks`` without HTTP (test request included); the webhook object."""
        body: dict[str, Any] = {"url": url, **fields}
        if hmac is not None:
            body["hmac"] = hmac
        return self.core.webhooks.create(body)

    def reset(self, *, webhooks: bool = False) -> None:
        self.core.reset(webhooks=webhooks)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- the ``telephony sandbox`` verb --------------------------------------------------------------


def _rate_limit(text: str) -> RateLimit:
    try:
        return RateLimit.parse(text, "--rate-limit")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _at_least(convert: Callable[[str], float], minimum: float) -> Callable[[str], float]:
    """An argparse ``type``: the number ``convert`` reads, refused below ``minimum``."""

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text!r}")
        return value

    return parse


_non_negative = _at_least(float, 0)
_positive_int = _at_least(int, 1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=defaults.SANDBOX_PORT, help="port (default %(default)s)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("DAILY_API_KEY") or defaults.SANDBOX_API_KEY,
        help=f"bearer key the API accepts (default: $DAILY_API_KEY, else "
        f"{defaults.SANDBOX_API_KEY!r})",
    )
    parser.add_argument(
        "--time-scale",
        type=_non_negative,
        default=1.0,
        help="multiplies every simulated delay: 0.1 runs calls ten times faster (default 1)",
    )
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=DEFAULT_RATE_LIMIT,
        help="dial-out starts allowed in any window, as N/Ws (default %(default)s)",
    )
    parser.add_argument(
        "--presence-lag",
        type=_non_negative,
        default=defaults.SANDBOX_PRESENCE_LAG,
        help="seconds room presence trails a leg joining or leaving, scaled by --time-scale "
        "(default %(default)g, Daily's documented worst)",
    )
    parser.add_argument(
        "--room-legs",
        type=_positive_int,
        default=defaults.SANDBOX_ROOM_LEGS,
        help="SIP/PSTN legs allowed at once in one room; a start beyond is refused with 400 "
        "(default %(default)s, Daily's max_sip_pstn_sessions_per_room)",
    )
    parser.add_argument(
        "--webhook-copies",
        type=_positive_int,
        default=1,
        help="send every webhook this many times, the same id each time (default %(default)s)",
    )
    parser.add_argument(
        "--webhook-delay",
        type=_non_negative,
        default=0.0,
        help="hold each copy of a webhook back a random 0..S seconds, scaled by --time-scale, "
        "so they arrive out of order (default %(default)g)",
    )
    parser.add_argument(
        "--webhook-url", help="register a webhook to this URL at start (it must answer 200)"
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("DAILY_WEBHOOK_SECRET") or None,
        help="base64 hmac secret for --webhook-url (default: $DAILY_WEBHOOK_SECRET, else "
        "generated: read it with GET /v1/webhooks)",
    )


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sandbox = Sandbox(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        time_scale=args.time_scale,
        rate_limit=args.rate_limit,
        log_requests=True,
        presence_lag=args.presence_lag,
        room_legs=args.room_legs,
        disorder=Disorder(args.webhook_copies, args.webhook_delay),
    )
    try:
        sandbox.start()
    except OSError as exc:
        log.error("sandbox: cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    print(f"sandbox: Daily API at {sandbox.url} (time scale {args.time_scale:g})", flush=True)
    if args.webhook_url:
        try:
            webhook = sandbox.register_webhook(args.webhook_url, args.webhook_secret)
        except ApiError as exc:
            log.error("sandbox: webhook not registered: %s", exc.info)
            sandbox.stop()
            return 1
        print(f"sandbox: webhook {webhook['uuid']} -> {webhook['url']}", flush=True)
        if not args.webhook_secret:  # never printed: secrets stay out of terminals and logs
            print("sandbox: its generated secret is the hmac of GET /v1/webhooks", flush=True)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stopping.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    sandbox.stop()
    return 0

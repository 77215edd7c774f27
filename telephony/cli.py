"""The ``telephony`` command: one sub-command per verb, each importing only what it needs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def _sandbox(args: argparse.Namespace) -> int:
    from telephony.sandbox.server import main as sandbox_main

    return sandbox_main(args)


def _serve(args: argparse.Namespace) -> int:
    """Production HTTP server: granian, chosen by measurement (see bench/README.md)."""
    from granian.constants import Interfaces
    from granian.server import Server

    from telephony.config import Settings

    Settings.from_env()  # fail fast, with the variable named, before forking workers
    server = Server(
        "telephony.web:create_app",
        address=args.host,
        port=args.port,
        interface=Interfaces.WSGI,
        workers=args.workers,
        blocking_threads=args.threads,
        factory=True,
        log_access=args.access_log,
        respawn_failed_workers=True,
    )
    server.serve()
    return 0


def _worker(args: argparse.Namespace) -> int:
    import logging

    from telephony.config import Settings
    from workers.pool import Pool, run_worker

    settings = Settings.from_env()
    level = "INFO" if args.verbose else "WARNING"
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s")
    if args.burst:
        run_worker(settings, f"telephony-burst-{args.workers}", burst=True, level=level)
        return 0
    return Pool(settings, args.workers, level=level).run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telephony",
        description="Place and control outbound calls through Daily's dial-out API.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the HTTP API and webhook receiver on a production server (granian)",
        description="Serve /v1, /webhooks/daily and the health routes with granian (WSGI). "
        "Configuration comes from the environment (REDIS_URL, DAILY_WEBHOOK_SECRET, "
        "TELEPHONY_API_TOKEN, ...).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface (default %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port (default %(default)s)")
    serve.add_argument(
        "--workers", type=int, default=2, help="server processes (default %(default)s)"
    )
    serve.add_argument(
        "--threads", type=int, default=8, help="threads per process (default %(default)s)"
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(handler=_serve)

    worker = sub.add_parser(
        "worker",
        help="run queue workers (with the retry scheduler)",
        description="Run a supervised pool of RQ workers that talk to Daily: starts, retries, "
        "pacing waits, ring timeouts, DTMF, stop and transfer. A worker that dies is replaced.",
    )
    worker.add_argument(
        "-n", "--workers", type=int, default=2, help="worker processes (default %(default)s)"
    )
    worker.add_argument("--burst", action="store_true", help="one worker; exit when idle")
    worker.add_argument("-v", "--verbose", action="store_true", help="log every job")
    worker.set_defaults(handler=_worker)

    sandbox = sub.add_parser(
        "sandbox",
        help="run the Daily stand-in (REST API + signed webhooks)",
        description="Run the sandbox: a faithful stand-in for Daily's dial-out REST API that "
        "sends signed webhooks. Outcomes are chosen by the destination (see the README).",
    )
    from telephony.sandbox.server import add_arguments as sandbox_arguments

    sandbox_arguments(sandbox)
    sandbox.set_defaults(handler=_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

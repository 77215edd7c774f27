"""The ``telephony`` command: one sub-command per verb, each importing only what it needs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telephony.client import Call, TelephonyClient

Handler = Callable[[argparse.Namespace], int]


def _sandbox(args: argparse.Namespace) -> int:
    from telephony.sandbox.server import main as sandbox_main

    return sandbox_main(args)


def _serve(args: argparse.Namespace) -> int:
    """Production HTTP server: granian, chosen by measurement (see bench/README.md), running
    the ASGI front (``telephony.web.asgi``), where no slow client holds a thread."""
    import os

    from granian.constants import Interfaces
    from granian.server import Server

    from telephony.config import Settings

    Settings.from_env()  # fail fast, with the variable named, before forking workers
    os.environ["TELEPHONY_WEB_THREADS"] = str(args.threads)  # read by each worker's front
    server = Server(
        "telephony.web.asgi:create_app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        blocking_threads=1,  # granian's ASGI mode allows one; the front has its own pool
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


def _register_webhook(args: argparse.Namespace) -> int:
    """Register (or re-activate) this service's webhook with Daily, idempotently, with the
    ``retryType`` chosen in :data:`telephony.defaults.WEBHOOK_RETRY_TYPE`."""
    from telephony import defaults
    from telephony.config import Settings
    from telephony.daily import DailyClient

    settings = Settings.from_env()
    if not settings.webhook_secret:
        print("DAILY_WEBHOOK_SECRET is not set: the receiver would refuse every webhook")
        return 2
    with DailyClient.from_settings(settings) as daily:
        webhook = daily.ensure_webhook(
            args.url, settings.webhook_secret.reveal(), retry_type=defaults.WEBHOOK_RETRY_TYPE
        )
    print(f"webhook {webhook.get('uuid')} -> {webhook.get('url')} ({webhook.get('state')})")
    if not settings.redis_url:
        print("REDIS_URL is not set: the workers' webhook health check will not watch it")
        return 0
    import redis

    from telephony import webhook_health
    from telephony.store import CallStore, connect

    try:
        store = CallStore(connect(settings, "register-webhook"), settings)
        webhook_health.remember(store, webhook)
    except redis.RedisError as exc:
        print(f"could not record it in Redis ({exc}): the health check will not watch it")
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    from telephony.demo import run

    return run(args)


# --- Operator verbs: call, dtmf, stop, transfer, show, watch ------------------------------------
#
# They talk to Redis directly through TelephonyClient (REDIS_URL, TELEPHONY_KEY_PREFIX,
# TELEPHONY_QUEUE from the environment). User errors are one message and an exit code, never a
# traceback: 2 for invalid input or configuration, 1 for a refused command or Redis down.

OperatorRun = Callable[["TelephonyClient", argparse.Namespace], int]


def _operator(run: OperatorRun) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        import redis

        from telephony.client import CommandError, TelephonyClient, ValidationError, rename_fields

        try:
            with TelephonyClient() as client:
                return run(client, args)
        except ValidationError as exc:
            fields = rename_fields(exc.fields, args.flags)  # the names on the command line
            _complain("invalid input", *(f"  {path}: {text}" for path, text in fields.items()))
            return 2
        except CommandError as exc:
            _complain(str(exc))
            return 1
        except redis.RedisError as exc:
            _complain(f"Redis is unavailable: {exc}")
            return 1

    return handler


def _complain(*lines: str) -> None:
    print(f"telephony: {lines[0]}", *lines[1:], sep="\n", file=sys.stderr)


def _print_json(data: Any) -> None:
    import json

    print(json.dumps(data, separators=(",", ":")), flush=True)


def _event_line(event: dict[str, Any], with_call: bool = True) -> str:
    moved = f"{event.get('from') or '-'} -> {event.get('to') or '-'}"
    words = [f"{event['seq']:>6}", str(event.get("at")), str(event.get("event")), moved]
    if with_call:
        words.insert(2, str(event.get("callId") or "-"))
    data = event.get("data")
    if event.get("event") == "call.waiting" and isinstance(data, dict) and data.get("for"):
        words.append(f"for {data['for']}")  # why the call is not dialling
    words.append(f"[{event.get('source')}]")
    if event.get("ignored"):
        words.append("(ignored)")
    return "  ".join(words)


def _print_events(events: Iterable[dict[str, Any]], as_json: bool) -> None:
    for event in events:
        if as_json:
            _print_json(event)
        else:
            print(_event_line(event), flush=True)


def _op_call(client: TelephonyClient, args: argparse.Namespace) -> int:
    import contextlib
    import json

    from telephony import machine
    from telephony.client import NOT_GIVEN, ValidationError

    metadata: Any = NOT_GIVEN
    if args.metadata is not None:
        try:
            metadata = json.loads(args.metadata)
        except (ValueError, RecursionError):
            raise ValidationError({"metadata": "must be JSON"}) from None
    call = client.dial(
        args.room,
        phone_number=args.phone,
        sip_uri=args.sip,
        display_name=args.display_name,
        caller_id=args.caller_id,
        extension=args.extension,
        user_id=args.id,
        ring_timeout_sec=args.ring_timeout,
        max_duration_sec=args.max_duration,
        metadata=metadata,
        idempotency_key=args.idempotency_key,
    )
    if args.json:
        _print_json(call.to_dict())
    else:
        print(call.id, flush=True)
    if not args.wait:
        return 0
    with contextlib.closing(client.follow(0, call.id)) as events:
        for event in events:
            _print_events([event], args.json)
            if event.get("to") in machine.FINAL and not event.get("ignored"):
                return 0 if event["to"] == "stopped" else 1
    return 1


def _op_dtmf(client: TelephonyClient, args: argparse.Namespace) -> int:
    call = client.send_dtmf(args.id, args.tones, args.method, args.duration_ms)
    return _done(call, args, f"DTMF {args.tones} queued for {call.id}")


def _op_stop(client: TelephonyClient, args: argparse.Namespace) -> int:
    call = client.stop(args.id)
    if call.final:
        text = f"{call.id} is {call.state}" + (f" ({call.reason})" if call.reason else "")
    else:
        text = f"hang-up queued for {call.id}"
    return _done(call, args, text)


def _op_transfer(client: TelephonyClient, args: argparse.Namespace) -> int:
    call = client.transfer(
        args.id,
        args.to,
        caller_id=args.caller_id,
        extension=args.extension,
        wait_before_extension_dial_sec=args.wait_before_extension,
        refer=args.refer or None,
    )
    how = "SIP REFER" if args.refer else "transfer"
    return _done(call, args, f"{how} to {args.to} queued for {call.id}")


def _done(call: Call, args: argparse.Namespace, text: str) -> int:
    if args.json:
        _print_json(call.to_dict(history=False))
    else:
        print(f"{text} (state: {call.state})")
    return 0


def _op_show(client: TelephonyClient, args: argparse.Namespace) -> int:
    import json

    from telephony.client import CallNotFound

    call = client.get(args.id)
    if call is None:
        raise CallNotFound(f"no call {args.id!r}")
    if args.json:
        _print_json(call.to_dict())
        return 0
    print(f"{call.id}  {call.kind}  {call.state}")
    rows = {
        "room": call.room,
        "destination": call.destination,
        "session": call.session_id,
        "attempts": call.attempts,
        "error": call.error,
        "reason": call.reason,
        "created": call.created_at,
        "updated": call.updated_at,
        "metadata": json.dumps(call.metadata),
        **{name: json.dumps(value) for name, value in sorted(call.extra.items())},
    }
    width = max(map(len, rows))
    for name, value in rows.items():
        print(f"  {name:<{width}}  {'-' if value is None else value}")
    print("history:")
    for entry in call.history:
        print("  " + _event_line(entry, with_call=False))
    return 0


def _op_watch(client: TelephonyClient, args: argparse.Namespace) -> int:
    import contextlib

    try:
        with contextlib.closing(client.follow(args.after, args.id)) as events:
            _print_events(events, args.json)
    except KeyboardInterrupt:
        pass
    return 0


def add_operator_commands(sub: Any) -> None:
    """``call``, ``dtmf``, ``stop``, ``transfer``, ``show``, ``watch``."""
    from telephony import defaults

    def verb(
        name: str, run: OperatorRun, summary: str, description: str, **flags: str
    ) -> argparse.ArgumentParser:
        """``flags``: the client's name of each option → its name on the command line."""
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=summary, description=description
        )
        parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
        parser.set_defaults(handler=_operator(run), flags=flags)
        return parser

    call = verb(
        "call",
        _op_call,
        "queue a dial-out and print its id",
        "Queue a dial-out to a phone number or SIP URI from a Daily room, straight into Redis "
        "(no HTTP). Prints the call id; with --wait, follows its events until it ends (exit 0 "
        "if it stopped, 1 if it failed).",
        room="ROOM",
        phone_number="--phone",
        sip_uri="--sip",
        ring_timeout_sec="--ring-timeout",
        max_duration_sec="--max-duration",
        metadata="--metadata",
        idempotency_key="--idempotency-key",
        user_id="--id",
        display_name="--display-name",
        caller_id="--caller-id",
        extension="--extension",
    )
    call.add_argument("room", help="Daily room the call joins")
    target = call.add_mutually_exclusive_group(required=True)
    target.add_argument("--phone", metavar="NUMBER", help="E.164 number, e.g. +12025550123")
    target.add_argument("--sip", metavar="URI", help="SIP URI, e.g. sip:agent@example.com")
    call.add_argument("--ring-timeout", type=int, metavar="S", help="stop if not answered in S s")
    call.add_argument("--max-duration", type=int, metavar="S", help="stop the call after S s")
    call.add_argument("--metadata", metavar="JSON", help="any JSON, kept on the call")
    call.add_argument("--idempotency-key", metavar="K", help="same key again: the same call")
    call.add_argument("--id", metavar="ID", help="the call id (Daily's userId); default a UUID")
    call.add_argument("--display-name", metavar="NAME", help="name shown in the room")
    call.add_argument("--caller-id", metavar="UUID", help="purchased number to call from (PSTN)")
    call.add_argument("--extension", metavar="DIGITS", help="dialled after connect (PSTN)")
    call.add_argument("--wait", action="store_true", help="follow the call until it ends")

    dtmf = verb(
        "dtmf",
        _op_dtmf,
        "send DTMF tones on a connected or answered call",
        "Queue DTMF tones (0-9 A-D * #, at most 20) on a call that is connected or answered.",
        tones="TONES",
        method="--method",
        digit_duration_ms="--duration-ms",
    )
    dtmf.add_argument("id", help="call id")
    dtmf.add_argument("tones", help="tones, e.g. 1234#")
    dtmf.add_argument("--method", choices=defaults.DTMF_METHODS, help="signalling (default auto)")
    dtmf.add_argument("--duration-ms", type=int, metavar="MS", help="per digit (default 500)")

    stop = verb(
        "stop",
        _op_stop,
        "hang up a call (or cancel it while queued)",
        "Hang up a call, or cancel it if it has not started yet. Idempotent.",
    )
    stop.add_argument("id", help="call id")

    transfer = verb(
        "transfer",
        _op_transfer,
        "transfer a connected or answered call",
        "Transfer a call to a phone number or SIP URI (Daily's sipCallTransfer), or hand it "
        "off with a SIP REFER (--refer).",
        to_end_point="TO",
        refer="--refer",
        caller_id="--caller-id",
        extension="--extension",
        wait_before_extension_dial_sec="--wait-before-extension",
    )
    transfer.add_argument("id", help="call id")
    transfer.add_argument("to", help="E.164 number or SIP URI")
    transfer.add_argument("--refer", action="store_true", help="SIP REFER: hand the call off")
    transfer.add_argument("--caller-id", metavar="UUID", help="number to call from (PSTN)")
    transfer.add_argument("--extension", metavar="DIGITS", help="dialled after connect (PSTN)")
    transfer.add_argument(
        "--wait-before-extension", type=int, metavar="S", help="seconds before the extension"
    )

    show = verb(
        "show",
        _op_show,
        "show a call and its history",
        "Show one call: its fields and every recorded event, oldest first.",
    )
    show.add_argument("id", help="call id")

    watch = verb(
        "watch",
        _op_watch,
        "follow events live (all calls, or one)",
        "Print recorded events after --after, then follow new ones live, one line per event. "
        "Ctrl-C stops (exit 0).",
    )
    watch.add_argument("id", nargs="?", help="only this call's events")
    watch.add_argument(
        "--after",
        type=_seq,
        default=0,
        metavar="SEQ",
        help="start after this seq (default 0)",
    )


def _seq(text: str) -> int:
    """A feed position: a whole number, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more: {text!r}")
    return int(text)


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """Every verb's parser; with ``verb``, only that one gets the options whose definitions
    import heavy modules (the demo's and the sandbox's: Flask, granian, the pool), so that
    ``telephony show`` does not pay a second for ``telephony demo``."""
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
        "--threads",
        type=int,
        default=2,
        help="threads per process that run the API once a request's body is in; webhooks are "
        "answered on the event loop (default %(default)s)",
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

    register = sub.add_parser(
        "register-webhook",
        help="register this service's webhook with Daily (idempotent; re-activates FAILED)",
        description="Create or update the webhook pointing at URL with DAILY_WEBHOOK_SECRET as "
        "its hmac, using DAILY_API_URL and DAILY_API_KEY. Daily sends a test request to URL "
        "first, so the service must be reachable there.",
    )
    register.add_argument("url", help="public URL of POST /webhooks/daily")
    register.set_defaults(handler=_register_webhook)

    demo = sub.add_parser(
        "demo",
        help="everything on embedded defaults, with a live sample campaign",
        description="Start an embedded Redis, the sandbox, the web server and workers; place "
        "one call per sandbox outcome through the HTTP API and show them live. Exits 0 when "
        "every call ended as its outcome implies.",
    )
    if verb in (None, "demo"):
        from telephony.demo import add_arguments as demo_arguments

        demo_arguments(demo)
    demo.set_defaults(handler=_demo)

    sandbox = sub.add_parser(
        "sandbox",
        help="run the Daily stand-in (REST API + signed webhooks)",
        description="Run the sandbox: a faithful stand-in for Daily's dial-out REST API that "
        "sends signed webhooks. Outcomes are chosen by the destination (see the README).",
    )
    if verb in (None, "sandbox"):
        from telephony.sandbox.server import add_arguments as sandbox_arguments

        sandbox_arguments(sandbox)
    sandbox.set_defaults(handler=_sandbox)

    add_operator_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    verb = given[0] if given and not given[0].startswith("-") else ""
    args = build_parser(verb).parse_args(given)
    handler: Handler = args.handler
    from telephony.config import ConfigError
    from telephony.errors import DailyError

    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:  # a setting in the environment: name it, no traceback
        print(f"telephony {args.command}: {exc}", file=sys.stderr)
        return 2
    except DailyError as exc:
        print(f"telephony {args.command}: Daily refused: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

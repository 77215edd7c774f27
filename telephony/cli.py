"""The ``telephony`` command: one sub-command per verb, each importing only what it needs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def _sandbox(args: argparse.Namespace) -> int:
    from telephony.sandbox.server import main as sandbox_main

    return sandbox_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telephony",
        description="Place and control outbound calls through Daily's dial-out API.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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

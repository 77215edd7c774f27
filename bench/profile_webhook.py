"""Where a webhook's time goes: our endpoint against the floor, in one process, no server.

    python bench/profile_webhook.py                # about 20 s; --help for the knobs

The HTTP server and the load generator are left out, so what remains is what each
application does per request: the floor (``webhooks.floor_app``: Flask, the HMAC, one no-op
``EVALSHA``), our WSGI app (``telephony.web:create_app``) and the ASGI front that
``telephony serve`` runs (``telephony.web.asgi``), each called directly with prebuilt requests
for calls that exist (the same signed lifecycles as ``bench/webhooks.py``), against a real
Redis. Prints microseconds per webhook for each, alternated in rounds so drift falls on all
alike, then a pyinstrument profile of the ASGI front's path.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from common import version  # bench/common.py
from pyinstrument import Profiler
from webhooks import PATH, PREFIX, Events, floor_app, headers  # bench/webhooks.py
from werkzeug.test import EnvironBuilder

from telephony.config import Settings
from telephony.redis_server import RedisServer
from telephony.store import CallStore
from telephony.web import create_app
from telephony.web.asgi import Front

Body = tuple[str, bytes]


def wsgi_runner(app: Any, bodies: list[Body]) -> Callable[[], None]:
    """Calls ``app`` once per body, with environs built beforehand (not timed)."""
    environs = [
        EnvironBuilder(path=PATH, method="POST", data=body, headers=headers(sig)).get_environ()
        for sig, body in bodies
    ]
    statuses: list[str] = []

    def start_response(status: str, _headers: Any, _exc: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    def run() -> None:
        for environ in environs:
            b"".join(app(environ, start_response))
        assert all(s.startswith("200") for s in statuses), set(statuses)
        statuses.clear()

    return run


def asgi_runner(front: Front, bodies: list[Body]) -> Callable[[], None]:
    """Calls the ASGI front once per body on one event loop, as granian's worker would."""
    scopes = []
    for sig, body in bodies:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers(sig).items()]
        raw.append((b"content-length", str(len(body)).encode()))
        scope = {"type": "http", "method": "POST", "path": PATH, "headers": raw,
                 "query_string": b"", "http_version": "1.1", "scheme": "http"}  # fmt: skip
        scopes.append((scope, body))
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def all_of_them() -> None:
        for scope, body in scopes:

            async def receive(body: bytes = body) -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            await front(scope, receive, send)  # type: ignore[arg-type]

    def run() -> None:
        asyncio.run(all_of_them())
        assert set(statuses) == {200}, set(statuses)
        statuses.clear()

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=150, help="lifecycles (8 webhooks) a round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    key = secrets.token_bytes(32)
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        RedisServer(Path(tmp) / "redis") as server,
    ):
        os.environ.update(REDIS_URL=server.url, TELEPHONY_KEY_PREFIX=PREFIX,
                          DAILY_WEBHOOK_SECRET=base64.b64encode(key).decode(),
                          TELEPHONY_API_TOKEN="bench")  # fmt: skip
        settings = Settings.from_env()
        client = redis.Redis.from_url(server.url)
        events = Events(CallStore(client, settings), key)
        floor, ours = floor_app(), create_app(settings)
        front = Front(create_app(settings))
        apps: dict[str, Callable[[list[Body]], Callable[[], None]]] = {
            "floor (Flask + HMAC + no-op EVALSHA)": lambda b: wsgi_runner(floor, b),
            "ours, WSGI (Flask route)": lambda b: wsgi_runner(ours, b),
            "ours, ASGI front (telephony serve)": lambda b: asgi_runner(front, b),
        }
        for make in apps.values():  # warm-up: connections, scripts loaded, imports
            make(events.take(5))()
        spent: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, make in apps.items():
                bodies = events.take(args.calls)
                run = make(bodies)
                began = time.perf_counter()
                run()
                spent[name].append((time.perf_counter() - began) / len(bodies) * 1e6)
        ping = []
        for _ in range(2000):
            began = time.perf_counter()
            client.ping()
            ping.append((time.perf_counter() - began) * 1e6)

        run = asgi_runner(front, events.take(args.calls * 2))
        client.config_resetstat()
        run()
        inside = client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]

        run = asgi_runner(front, events.take(args.calls * 2))
        profiler = Profiler(interval=0.0002)
        profiler.start()
        run()
        profiler.stop()
        redis_version = client.info("server")["redis_version"]

    print(f"Python {sys.version.split()[0]}, redis-server {redis_version}"
          f" (its own process), flask {version('flask')}, redis-py {version('redis')}; "
          f"{args.rounds} rounds of {args.calls * 8} webhooks, alternated")  # fmt: skip
    floor_us = min(spent[next(iter(apps))])
    for name, values in spent.items():
        best = min(values)
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:<40} {best:>7.0f} µs per webhook (rounds: {rounds}); "
              f"floor / this {floor_us / best:.2f}x")  # fmt: skip
    ping.sort()
    print(f"redis PING round trip: p50 {ping[len(ping) // 2]:.0f} µs; apply.lua inside Redis: "
          f"{inside:.0f} µs per webhook (INFO commandstats)")  # fmt: skip
    print()
    print(profiler.output_text(unicode=True, color=False, show_all=False, short_mode=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

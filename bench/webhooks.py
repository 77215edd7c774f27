"""Webhook ingest benchmark: one command, one server configuration, the numbers in README.md.

    python bench/webhooks.py            # about a minute; --help for the knobs

Prints (a) ``POST /webhooks/daily`` throughput against two references served the same way: a
bare Flask endpoint returning "ok", and the floor (Flask verifying the HMAC and running one
no-op ``EVALSHA``, the least any design with one commit round trip does), under granian
(WSGI) and gunicorn (sync workers) with the same worker count; (b) Redis round trips per
applied webhook, from Redis' own ``INFO commandstats``; (c) webhook → pub/sub subscriber
latency at a fixed rate. Every request is a distinct, validly signed Daily event for a call
that exists (dial-out lifecycles: connected, answered, warnings, stopped). It starts its own
Redis and servers on free loopback ports and stops them by pid.

Load: ``wrk`` when installed (a Lua script cycles through pre-generated bodies), else a
multi-process Python client with keep-alive connections; the output says which one ran.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import importlib.util
import json
import os
import platform
import re
import secrets
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import redis
from common import SPAWN, children, closed_loop, connect, post, version  # bench/common.py
from flask import Flask, request

from telephony import signature
from telephony.client import Subscription
from telephony.config import Settings
from telephony.keys import Keys
from telephony.processes import wait_ready
from telephony.redis_server import RedisServer, free_port
from telephony.store import CallStore, Change

HERE = Path(__file__).resolve().parent
PATH = "/webhooks/daily"
TIMESTAMP = str(int(time.time()))  # signed as Daily signs: the time it sends
PREFIX = "bench"
KEYS = Keys(PREFIX)
#: One dial-out's webhooks once Daily accepted the start, in their usual order.
LIFECYCLE = ("dialout.connected", "dialout.answered", *["dialout.warning"] * 5, "dialout.stopped")
#: Commands ``apply.lua`` issues itself: commandstats counts them too, but they are not trips.
SCRIPT_COMMANDS = frozenset(
    name.lower()
    for name in re.findall(
        r"redis\.call\('(\w+)'", resources.files("telephony").joinpath("apply.lua").read_text()
    )
)
#: What redis-py sends when it opens a connection (per connection, not per webhook).
CONNECTION_SETUP = ("hello", "client", "ping")
Body = tuple[str, bytes]  # (signature, raw body)


def bare_app() -> Flask:
    """The baseline: the same route in Flask, reading the body (as any receiver must; an unread
    body also makes granian drop the keep-alive connection) and answering "ok"."""
    app = Flask("bare")

    @app.post(PATH)
    def daily() -> str:
        request.get_data()
        return "ok"

    return app


def floor_app() -> Flask:
    """The floor of any design with one commit round trip: the same route in Flask, verifying
    the signature as Daily signs (HMAC-SHA256 of timestamp and body) and running one no-op
    script by ``EVALSHA``. Our endpoint does this plus parsing, the safe form, the envelope and
    the real script: what it costs beyond this floor is ours to answer for."""
    app = Flask("floor")
    key = signature.decode_secret(os.environ["DAILY_WEBHOOK_SECRET"])
    noop: Any = redis.Redis.from_url(os.environ["REDIS_URL"]).register_script("return 1")

    @app.post(PATH)
    def daily() -> tuple[str, int]:
        body = request.get_data()
        stamp = request.headers.get(signature.TIMESTAMP_HEADER)
        if not signature.verify(key, stamp, request.headers.get(signature.SIGNATURE_HEADER), body):
            return "bad signature", 401
        noop(keys=[], args=[])
        return "ok", 200

    return app


# --- Servers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    workers: int
    threads: int  # granian's blocking threads per worker; gunicorn's sync workers have one


def server_command(kind: str, app: str, port: int, config: Config) -> list[str]:
    """The server's Python arguments. ``asgi``: ours is the ASGI front ``telephony serve``
    runs (``telephony.web.asgi``), compared with the same bare WSGI app as ``granian``."""
    target = {
        "ours": "telephony.web:create_app", "bare": "webhooks:bare_app",
        "floor": "webhooks:floor_app",
    }[app]  # fmt: skip
    if kind == "asgi" and app == "ours":
        return ["-m", "granian", "--interface", "asgi", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--workers", str(config.workers),
                "--blocking-threads", "1", "--backlog", "2048",
                "--no-access-log", "--log-level", "error",
                "telephony.web.asgi:create_app"]  # fmt: skip
    if kind in ("granian", "asgi"):
        return ["-m", "granian", "--interface", "wsgi", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--workers", str(config.workers),
                "--blocking-threads", str(config.threads), "--backlog", "2048",
                "--no-access-log", "--log-level", "error", target]  # fmt: skip
    return ["-m", "gunicorn", "--worker-class", "sync",
            "--workers", str(config.workers), "--bind", f"127.0.0.1:{port}",
            "--backlog", "2048", "--log-level", "error", f"{target}()"]  # fmt: skip


@contextlib.contextmanager
def serve(kind: str, app: str, env: dict[str, str], config: Config) -> Iterator[str]:
    """One server process (its workers are its children); yields its URL, stops it by pid."""
    port = free_port()
    env = {**env, "TELEPHONY_WEB_THREADS": str(config.threads)}  # the ASGI front's pool
    with children([server_command(kind, app, port, config)], env, HERE) as started:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/healthz", started, timeout=20, any_status=True)  # bare: 404
        yield url


# --- Events --------------------------------------------------------------------------------------


class Events:
    """Signed webhooks for calls created beforehand, handed out once each, in lifecycles."""

    def __init__(self, store: CallStore, key: bytes) -> None:
        self.store = store
        self.key = key
        self.calls = 0

    def take(self, calls: int) -> list[Body]:
        bodies: list[Body] = []
        for n in range(self.calls, self.calls + calls):
            bodies += self._lifecycle(f"call-{n}", f"session-{n}", n)
        self.calls += calls
        return bodies

    def _lifecycle(self, call_id: str, session_id: str, n: int) -> list[Body]:
        """The call as the worker leaves it (ringing, session known), and Daily's webhooks."""
        create = {"kind": "dialout", "room": "bench", "destination": "+15550100000"}
        for change in (
            Change("queue", "call.queued", "api", call_id, create=create, mode="new"),
            Change("dial", "call.dialing", "worker", call_id),
            Change("accept", "call.started", "worker", call_id, session_id=session_id),
        ):
            self.store.apply(change)
        bodies = []
        for step, kind in enumerate(LIFECYCLE):
            payload = {"domain_id": "bench", "room": "bench", "timestamp": TIMESTAMP,
                       "session_id": session_id, "user_id": call_id, "caller_id": "bench",
                       "destination": "+15550100000", "step": step}  # fmt: skip
            envelope = {"version": "1.0.0", "type": kind, "id": f"evt-{n}-{step}",
                        "payload": payload, "event_ts": float(TIMESTAMP)}  # fmt: skip
            body = json.dumps(envelope).encode()
            bodies.append((signature.sign(self.key, TIMESTAMP, body), body))
        return bodies


def split(bodies: list[Body], parts: int) -> list[list[Body]]:
    """Whole lifecycles per part, so each client sends a call's events in order."""
    size = len(LIFECYCLE)
    lifecycles = [bodies[i : i + size] for i in range(0, len(bodies), size)]
    return [[body for lc in lifecycles[p::parts] for body in lc] for p in range(parts)]


def headers(sig: str) -> dict[str, str]:
    return {"Content-Type": "application/json", signature.TIMESTAMP_HEADER: TIMESTAMP,
            signature.SIGNATURE_HEADER: sig}  # fmt: skip


def signed(body: Body) -> tuple[dict[str, str], bytes]:
    """A body as the request that carries it."""
    return headers(body[0]), body[1]


# --- Load generators ----------------------------------------------------------------------------

WRK_SCRIPT = string.Template(r"""
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  sigs, bodies, index = {}, {}, 0
  for line in io.lines(args[1] .. "." .. id) do
    local sig, body = line:match("^([^\t]*)\t(.*)$$")
    sigs[#sigs + 1], bodies[#bodies + 1] = sig, body
  end
end
function request()
  index = index % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json",
    ["$timestamp_header"] = "$timestamp", ["$signature_header"] = sigs[index]},
    bodies[index])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "failed": %d}\n',
    summary.requests, summary.duration, e.status + e.connect + e.read + e.write + e.timeout))
end
""").substitute(
    timestamp_header=signature.TIMESTAMP_HEADER,
    signature_header=signature.SIGNATURE_HEADER,
    timestamp=TIMESTAMP,
)


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    failed: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @staticmethod
    def total(results: list[Result]) -> Result:
        """Several runs as one: their requests over their seconds."""
        return Result(
            sum(r.requests for r in results),
            sum(r.seconds for r in results),
            sum(r.failed for r in results),
        )


def wrk_load(
    url: str, parts: list[list[Body]], seconds: int, connections: int, work: Path
) -> Result:
    for n, part in enumerate(parts):
        with open(work / f"bodies.{n}", "wb") as out:
            out.writelines(sig.encode() + b"\t" + body + b"\n" for sig, body in part)
    (work / "bench.lua").write_text(WRK_SCRIPT)
    args = ["wrk", f"-t{len(parts)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
            "-s", str(work / "bench.lua"), url + PATH, "--", str(work / "bodies")]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"requests"')]
    if not lines:
        raise RuntimeError(f"wrk failed:\n{done.stdout}\n{done.stderr}")
    found = json.loads(lines[-1])
    return Result(found["requests"], found["duration_us"] / 1e6, found["failed"])


def python_load(url: str, parts: list[list[Body]], seconds: int) -> Result:
    requests = [[signed(body) for body in part] for part in parts]
    done, failed = closed_loop(url, PATH, requests, seconds, 200)
    return Result(done, seconds, failed)


# --- Latency -----------------------------------------------------------------------------------


def _key(call_id: str, event: str, step: object) -> str:
    return f"{call_id}/{event}/{step}"


def _subscriber(redis_url: str, count: int, ready: Any, out: Any) -> None:
    """Another process, as a real subscriber would be: arrival times by event."""
    client: Any = redis.Redis.from_url(redis_url)
    arrived: dict[str, int] = {}
    with Subscription(client, KEYS.events_channel) as events:  # subscribed once it returns
        ready.set()
        deadline = time.monotonic() + 120
        while len(arrived) < count and time.monotonic() < deadline:
            data = events.get(timeout=1)
            if data is not None:
                at = time.monotonic_ns()  # CLOCK_MONOTONIC: one clock for every process
                arrived.setdefault(_key(data["callId"], data["event"], data["data"]["step"]), at)
    out.put(arrived)


def latency(url: str, redis_url: str, bodies: list[Body], rate: float) -> tuple[list[float], int]:
    """Open loop: event ``i`` is due at ``t0 + i/rate`` and its latency runs from that moment
    (a sender that falls behind counts against us) to its arrival at the subscriber."""
    ready, out = SPAWN.Event(), SPAWN.Queue()
    listener = SPAWN.Process(target=_subscriber, args=(redis_url, len(bodies), ready, out))
    listener.start()
    if not ready.wait(30):
        raise RuntimeError("subscriber did not start")
    connection = connect(url)
    due: dict[str, int] = {}
    t0 = time.monotonic_ns() + 20_000_000
    for i, body in enumerate(bodies):
        at = t0 + int(i * 1e9 / rate)
        while (wait := at - time.monotonic_ns()) > 0:
            time.sleep(wait / 1e9 if wait > 300_000 else 0)
        envelope = json.loads(body[1])
        due[_key(envelope["payload"]["user_id"], envelope["type"], envelope["payload"]["step"])] = (
            at
        )
        post(connection, PATH, signed(body))
    arrived: dict[str, int] = out.get(timeout=130)
    listener.join(timeout=10)
    delays = sorted((arrived[key] - at) / 1e6 for key, at in due.items() if key in arrived)
    return delays, len(due) - len(delays)


# --- Slow clients -------------------------------------------------------------------------------


def trickle(port: int, count: int, stop: threading.Event) -> None:
    """``count`` connections each sending a webhook's body at 1 byte/s after a valid
    ``Content-Length``; one the server closes (408) is opened again, as an attacker would."""

    def opened() -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.setblocking(False)
        conn.send(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n".encode())
        return conn

    conns = [opened() for _ in range(count)]
    while not stop.wait(1.0):
        for n, conn in enumerate(conns):
            try:
                conn.send(b"x")
            except OSError:
                conn.close()
                with contextlib.suppress(OSError):
                    conns[n] = opened()
    for conn in conns:
        conn.close()


def probe(url: str, bodies: list[Body], interval: float) -> list[float]:
    """Open loop: a signed webhook every ``interval`` s, each on its own connection and
    thread; seconds to a 200 (5.0 for a timeout or a failure)."""
    results: list[float] = [5.0] * len(bodies)

    def send(n: int, body: Body) -> None:
        began = time.monotonic()
        with contextlib.suppress(OSError, http.client.HTTPException):
            connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
            head, payload = signed(body)
            connection.request("POST", PATH, body=payload, headers=head)
            if connection.getresponse().status == 200:
                results[n] = time.monotonic() - began
            connection.close()

    threads = []
    t0 = time.monotonic()
    for n, body in enumerate(bodies):
        time.sleep(max(0.0, t0 + n * interval - time.monotonic()))
        threads.append(threading.Thread(target=send, args=(n, body), daemon=True))
        threads[-1].start()
    for thread in threads:
        thread.join(10)
    return sorted(results)


def slow_clients(
    kinds: list[str],
    counts: list[int],
    events: Events,
    env: dict[str, str],
    config: Config,
    seconds: float,
) -> list[tuple[str, int, float, float, int]]:
    """(server, N, p50 ms, p99 ms, timed out) of probes beside N body-trickling clients."""
    rows = []
    for kind in kinds:
        for count in counts:
            bodies = events.take(int(seconds * 10) // len(LIFECYCLE) + 1)[: int(seconds * 10)]
            with serve(kind, "ours", env, config) as url:
                stop = threading.Event()
                port = int(url.rsplit(":", 1)[1])
                tricklers = threading.Thread(target=trickle, args=(port, count, stop))
                tricklers.start()
                time.sleep(1.0)  # every connection open and trickling
                try:
                    delays = probe(url, bodies, 0.1)
                finally:
                    stop.set()
                    tricklers.join(15)
            timed_out = sum(1 for d in delays if d >= 5.0)
            rows.append((kind, count, percentile(delays, 0.5) * 1000,
                         percentile(delays, 0.99) * 1000, timed_out))  # fmt: skip
    return rows


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


# --- Redis' own counters -------------------------------------------------------------------------


def commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


def outcomes(client: Any) -> dict[str, int]:
    counts = client.hgetall(KEYS.metrics)
    return {k.decode().removeprefix("events_"): int(v) for k, v in counts.items()
            if k.startswith(b"events_")}  # fmt: skip


def added(one: dict[str, int], other: dict[str, int]) -> dict[str, int]:
    return {k: one.get(k, 0) + other.get(k, 0) for k in one.keys() | other.keys()}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


# --- The run -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per throughput run")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--threads", type=int, default=2, help="granian threads per worker")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--clients", type=int, default=2, help="wrk threads / client processes")
    parser.add_argument("--calls", type=int, default=2500, help="calls prepared per run")
    parser.add_argument(
        "--rounds", type=int, default=2, help="floor / ours runs, alternated, per server"
    )
    parser.add_argument("--rate", type=float, default=500.0, help="latency run, events/s")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--load", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--servers", default="granian,asgi,gunicorn",
        help="comma-separated: granian (WSGI), asgi (granian + the ASGI front), gunicorn",
    )  # fmt: skip
    parser.add_argument(
        "--slow", default="",
        help="slow-client mode: comma-separated counts of body-trickling clients (0,16,64,256)",
    )  # fmt: skip
    parser.add_argument("--slow-seconds", type=float, default=10.0, help="probes per count")
    args = parser.parse_args(argv)
    use_wrk = args.load == "wrk" or (args.load == "auto" and shutil.which("wrk") is not None)
    servers = [
        s for s in args.servers.split(",")
        if importlib.util.find_spec("granian" if s == "asgi" else s) is not None
    ]  # fmt: skip
    config = Config(args.workers, args.threads)
    key = secrets.token_bytes(32)
    started = time.monotonic()

    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        RedisServer(Path(tmp) / "redis") as server,
    ):
        client = redis.Redis.from_url(server.url)
        events = Events(CallStore(client, Settings(redis_url=server.url, key_prefix=PREFIX)), key)
        env = dict(os.environ, REDIS_URL=server.url, TELEPHONY_KEY_PREFIX=PREFIX,
                   DAILY_WEBHOOK_SECRET=base64.b64encode(key).decode(),
                   TELEPHONY_API_TOKEN="bench")  # fmt: skip

        def run(kind: str, app: str, bodies: list[Body]) -> Result:
            parts = split(bodies, args.clients)
            with serve(kind, app, env, config) as url:
                if use_wrk:
                    return wrk_load(url, parts, args.seconds, args.connections, Path(tmp))
                return python_load(url, parts, args.seconds)

        rows, trips = [], []
        for kind in servers:
            bare = run(kind, "bare", events.take(args.calls))
            floors, ours, counted, commands = [], [], {}, {}
            for _ in range(args.rounds):  # floor and ours alternated: drift falls on both
                bodies = events.take(args.calls)
                floors.append(run(kind, "floor", bodies))
                # Outcomes read before the "before" snapshot, so their HGETALL is not counted.
                counted_before, commands_before = outcomes(client), commandstats(client)
                ours.append(run(kind, "ours", bodies))
                commands = added(commands, delta(commandstats(client), commands_before))
                counted = added(counted, delta(outcomes(client), counted_before))
            rows.append((kind, bare, floors, ours, counted.get("duplicate", 0)))
            trips.append((kind, sum(counted.values()), commands))

        # The ASGI front against today's WSGI entry point, alternated (A B A B) so that the
        # machine's drift over the run falls on both alike.
        ab: dict[str, list[float]] = {"granian": [], "asgi": []}
        if "granian" in servers and "asgi" in servers:
            for _ in range(2):
                for kind in ab:
                    ab[kind].append(run(kind, "ours", events.take(args.calls)).rate)

        slow = []
        if args.slow:
            counts = [int(n) for n in args.slow.split(",")]
            kinds = [k for k in ("granian", "asgi") if k in servers]
            slow = slow_clients(kinds, counts, events, env, config, args.slow_seconds)

        warmup = int(args.rate)  # one second at the same rate, not measured
        count = warmup + int(args.rate * args.latency_seconds)
        bodies = events.take(count // len(LIFECYCLE) + 1)[:count]
        with serve(servers[0], "ours", env, config) as url:
            latency(url, server.url, bodies[:warmup], args.rate)
            delays, lost = latency(url, server.url, bodies[warmup:], args.rate)
        redis_version = client.info("server")["redis_version"]

    load = (f"wrk ({args.clients} threads, {args.connections} connections)" if use_wrk
            else f"python http.client ({args.clients} processes, one keep-alive connection "
                 "each)")  # fmt: skip
    print(
        f"host: {os.cpu_count()} CPUs, Python {platform.python_version()}, redis-server "
        f"{redis_version}, granian {version('granian')}, gunicorn {version('gunicorn')}"
    )
    print(
        f"load: {load}, {args.seconds} s per run; every server: {args.workers} workers "
        f"(granian: {args.threads} blocking threads each; gunicorn: sync)"
    )
    print()
    print(f"{'server':<10} {'bare req/s':>11} {'floor req/s':>12} {'ours req/s':>11} "
          f"{'ours/floor':>11} {'ours/bare':>10}  failed (bare/floor/ours)")  # fmt: skip
    for kind, bare, floors, ours, duplicates in rows:
        note = f"  ({duplicates} duplicates: raise --calls)" if duplicates else ""
        floor, mine = Result.total(floors), Result.total(ours)
        print(f"{kind:<10} {bare.rate:>11.0f} {floor.rate:>12.0f} {mine.rate:>11.0f} "
              f"{mine.rate / floor.rate:>10.2f}x {mine.rate / bare.rate:>9.2f}x"
              f"  {bare.failed}/{floor.failed}/{mine.failed}{note}")  # fmt: skip
        print(f"{'':<10} rounds: floor {', '.join(f'{r.rate:.0f}' for r in floors)}; "
              f"ours {', '.join(f'{r.rate:.0f}' for r in ours)}")  # fmt: skip
    print(
        "floor: Flask verifying the HMAC and running one no-op EVALSHA (the least any "
        "design with one commit round trip does); bare: Flask answering ok"
    )
    if ab["asgi"]:
        wsgi, asgi = (", ".join(f"{r:.0f}" for r in ab[k]) for k in ("granian", "asgi"))
        ratio = sum(ab["asgi"]) / sum(ab["granian"])
        print(f"ours, alternated: WSGI {wsgi} req/s, ASGI front {asgi} req/s: "
              f"ASGI / WSGI {ratio:.2f}x")  # fmt: skip
    print()
    for kind, webhooks, commands in trips:
        evalsha = commands.pop("evalsha", 0)
        others = {n: c for n, c in commands.items() if n not in SCRIPT_COMMANDS | {"info"}}
        setup = {n: others.pop(n) for n in CONNECTION_SETUP if n in others}
        print(
            f"redis round trips per webhook ({kind}, {webhooks} webhooks, INFO commandstats): "
            f"{(evalsha + sum(others.values())) / webhooks:.4f} = EVALSHA "
            f"{evalsha / webhooks:.4f} + other {others or 0}; once per connection: {setup}"
        )
    print()
    p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
    print(f"webhook -> subscriber latency at {args.rate:g}/s for {args.latency_seconds:g} s "
          f"({servers[0]}, after 1 s warm-up): p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
          f"max {delays[-1]:.2f} ms, lost {lost}")  # fmt: skip
    if slow:
        print()
        print(f"signed webhook every 100 ms for {args.slow_seconds:g} s beside N clients "
              "trickling a body at 1 byte/s:")  # fmt: skip
        print(f"{'server':<10} {'N':>4} {'p50 ms':>8} {'p99 ms':>8}  timed out (5 s)")
        for kind, count, p50, p99, timed_out in slow:
            print(f"{kind:<10} {count:>4} {p50:>8.1f} {p99:>8.1f}  {timed_out}")
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

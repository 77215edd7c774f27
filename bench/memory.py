"""Redis memory per call, by key family, against the goals of bench/README.md ("Memory").

    python bench/memory.py                          # 200 calls, about a minute
    python bench/memory.py --stopped                # calls stopped through the API (8 events)
    python bench/memory.py --redis-server /usr/bin/redis-server   # another build (jemalloc)

Places N calls through the real service (``telephony serve``, a ``telephony worker`` pool and
the sandbox over HTTP, a room each): by default calls the far end answers and then hangs up
(6 events each), with ``--stopped`` answered calls stopped through the API (8 events). Once
every call has ended it waits ``--settle`` seconds (late timers, result expiry), reads
``MEMORY USAGE`` of every key and prints bytes per call by key family, with each family's
TTLs. Exits 1 when a goal is missed: durable ≤ 2,048 B per call, jobs ≤ 1,024 B per call,
feed ≤ 400 B per event.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from common import children, version, wait_until  # bench/common.py
from jobs import API_KEY, REPO, TOKEN, UNLIMITED, WEBHOOK_SECRET, served  # bench/jobs.py

from telephony import TelephonyClient
from telephony.config import RateLimit, Settings
from telephony.redis_server import RedisServer
from telephony.sandbox.server import Sandbox

PREFIX = "mem"
HANGUP, ANSWER = "+15550100003", "+15550100000"
GOALS = {"durable": 2048, "jobs": 1024}
FEED_GOAL = 400

#: (family, kind, pattern): the first pattern a key matches names its family. ``durable``
#: and ``jobs`` count against the per-call goals; ``fixed`` is the service's own, whatever
#: the number of calls.
FAMILIES: list[tuple[str, str, re.Pattern[str]]] = [
    (name, kind, re.compile(pattern))
    for name, kind, pattern in (
        ("call hash", "durable", rf"^{PREFIX}:call:"),
        ("history", "durable", rf"^{PREFIX}:history:"),
        ("dedupe ids", "durable", rf"^{PREFIX}:seen:"),
        ("session index", "durable", rf"^{PREFIX}:session:"),
        ("listing index", "durable", rf"^{PREFIX}:(calls|open)$"),
        ("feed", "feed", rf"^{PREFIX}:feed$"),
        ("RQ result streams", "jobs", r"^rq:results:"),
        ("RQ job hashes", "jobs", r"^rq:job:"),
        ("RQ registries", "jobs", r"^rq:(finished|failed|scheduled|wip|deferred|canceled):"),
        ("RQ workers, queues", "fixed", r"^rq:"),
        ("service (fixed)", "fixed", rf"^{PREFIX}:"),
    )
]


@dataclass
class Family:
    kind: str
    keys: int = 0
    bytes: int = 0
    ttls: list[int] = field(default_factory=list)

    def ttl_text(self) -> str:
        if not self.ttls:
            return "-"
        kept = [t for t in self.ttls if t >= 0]
        forever = len(self.ttls) - len(kept)
        parts = [f"{min(kept)}-{max(kept)} s" if kept else ""]
        if forever:
            parts.append(f"{forever} without")
        return ", ".join(p for p in parts if p)


def measure(client: Any) -> dict[str, Family]:
    """Every key's ``MEMORY USAGE`` (all of it: ``SAMPLES 0``), summed by family."""
    found: dict[str, Family] = {}
    for raw in client.scan_iter(count=1000):
        key = raw.decode()
        name, kind = next(((n, k) for n, k, p in FAMILIES if p.search(key)), ("other", "fixed"))
        family = found.setdefault(name, Family(kind))
        family.keys += 1
        family.bytes += int(client.memory_usage(raw, samples=0) or 0)
        family.ttls.append(int(client.ttl(raw)))
    return found


def run_calls(args: argparse.Namespace, client: Any, api: TelephonyClient) -> tuple[int, float]:
    """Places the calls and waits for their ends; (feed events, seconds)."""
    began = time.monotonic()
    destination = ANSWER if args.stopped else HANGUP
    ids = [api.dial(f"mem-{n}", phone_number=destination).id for n in range(args.calls)]

    def states() -> list[str]:
        pipe = client.pipeline(transaction=False)
        for call_id in ids:
            pipe.hget(f"{PREFIX}:call:{call_id}", "state")
        return [(s or b"").decode() for s in pipe.execute()]

    def all_in(*wanted: str) -> Callable[[], bool]:
        return lambda: all(s in wanted for s in states())

    if args.stopped:
        wait_until(all_in("answered"), 120, "every call to be answered")
        for call_id in ids:
            api.stop(call_id)
    wait_until(all_in("stopped", "error"), 120, "every call to end")
    ended = [s for s in states() if s != "stopped"]
    if ended:
        raise SystemExit(f"{len(ended)} calls did not end stopped: {ended[:5]}")
    return int(client.xlen(f"{PREFIX}:feed")), time.monotonic() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--stopped", action="store_true", help="stop every call through the API")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds after the last end")
    parser.add_argument("--redis-server", help="redis-server binary (default: the embedded one)")
    parser.add_argument("--workers", type=int, default=4, help="worker pool size")
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp,
        RedisServer(Path(tmp) / "redis", binary=args.redis_server) as server,
        Sandbox(api_key=API_KEY, time_scale=0.1, rate_limit=RateLimit.parse(UNLIMITED)) as sb,
    ):
        env = {
            **os.environ, "PYTHONPATH": str(REPO), "REDIS_URL": server.url,
            "DAILY_API_URL": sb.url, "DAILY_API_KEY": API_KEY,
            "DAILY_WEBHOOK_SECRET": WEBHOOK_SECRET, "TELEPHONY_API_TOKEN": TOKEN,
            "TELEPHONY_DIALOUT_LIMIT": UNLIMITED, "TELEPHONY_KEY_PREFIX": PREFIX,
            "TELEPHONY_QUEUE": PREFIX, "TELEPHONY_SPOOL_DIR": str(Path(tmp) / "spool"),
        }  # fmt: skip
        client: Any = redis.Redis.from_url(server.url)
        pool = [["-m", "telephony", "worker", "-n", str(args.workers)]]
        with served(env, 1, 2) as url, children(pool, env, REPO, Path(tmp) / "pool.log"), \
                TelephonyClient(settings=Settings.from_env(env)) as api:  # fmt: skip
            sb.register_webhook(f"{url}/webhooks/daily", WEBHOOK_SECRET)
            events, seconds = run_calls(args, client, api)
            time.sleep(args.settle)
            families = measure(client)
        info = client.info("server")
        allocator = client.info("memory").get("mem_allocator", "?")

    calls = args.calls
    print(f"redis-server {info['redis_version']} ({allocator}), "
          f"Python {sys.version.split()[0]}, rq {version('rq')}")  # fmt: skip
    mode = "stopped through the API" if args.stopped else "answered, then hung up by the far end"
    print(
        f"{calls} calls, {mode}: {events} feed events ({events / calls:.1f} per call), "
        f"placed and ended in {seconds:.0f} s, measured {args.settle:g} s after the last end"
    )
    print()
    print(f"{'family':<22} {'keys':>6} {'B per call':>11}  TTL")
    totals: dict[str, float] = {}
    for name, family in sorted(families.items(), key=lambda item: -item[1].bytes):
        per_call = family.bytes / calls
        totals[family.kind] = totals.get(family.kind, 0) + per_call
        print(f"{name:<22} {family.keys:>6} {per_call:>11.0f}  {family.ttl_text()}")
    feed = families.get("feed")
    per_event = feed.bytes / events if feed and events else 0.0
    print()
    missed = []
    for kind, goal in GOALS.items():
        got = totals.get(kind, 0.0)
        ok = got <= goal
        missed += [] if ok else [kind]
        print(f"{kind + ' total':<22} {got:>18.0f} B per call   goal <= {goal}: "
              f"{'met' if ok else 'MISSED'} ({goal - got:+.0f} B)")  # fmt: skip
    ok = per_event <= FEED_GOAL
    missed += [] if ok else ["feed"]
    print(f"{'feed, per event':<22} {per_event:>18.0f} B per event  goal <= {FEED_GOAL}: "
          f"{'met' if ok else 'MISSED'} ({FEED_GOAL - per_event:+.0f} B)")  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

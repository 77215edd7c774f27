"""Dial-out job benchmark: one command, the numbers in README.md ("Dial-out jobs").

    python bench/jobs.py            # about 30 s; --help for the knobs

Prints (a) worker throughput: ``start_dialout`` jobs against the sandbox versus a no-op RQ job
(``os.getpid``) on the same workers (``SimpleWorker``, JSON serializer, the same number of
processes), pacing lifted on both sides (ours 100000/1s, the sandbox's too), with the Redis
commands each job costs (``INFO commandstats``, RQ's own included); (b) how fast calls are
queued: ``TelephonyClient.dial`` from one thread, and ``POST /v1/calls`` served by granian
(``telephony serve``) from one and from several client processes.

Queues are filled while no worker runs; the workers are started afterwards and the rate is
taken from the jobs' own start/end times over the middle 80 % of completions, so worker
start-up and the stragglers at either end are not counted. It starts its own Redis, sandbox
and servers on free loopback ports, and stops them all (by process group) when done.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from common import children, closed_loop, version, wait_until  # bench/common.py
from rq import Queue
from rq.job import Job

from telephony import TelephonyClient
from telephony.config import RateLimit, Settings
from telephony.dispatch import job_id, make_queue
from telephony.keys import Keys
from telephony.processes import wait_ready
from telephony.redis_server import RedisServer, free_port
from telephony.sandbox.server import Sandbox

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
TOKEN = "bench-token"
UNLIMITED = "100000/1s"
DESTINATION = "+15550100000"  # the sandbox answers; its events come long after the run
#: Multiplies the sandbox's call timelines: connected/answered 5 and 17 minutes after a start,
#: so the sandbox spends the run answering starts, not emitting events nobody listens to.
SANDBOX_TIME_SCALE = 1000.0


# --- worker throughput --------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    jobs: int
    rate: float  # jobs/s over the middle 80 % of completions
    commands: float  # Redis commands per job, RQ's own and those inside Lua scripts included
    failed: int
    #: CPU milliseconds per job: the worker processes, redis-server, this process (the
    #: sandbox, in the dial-out run).
    cpu: tuple[float, float, float]


def run_jobs(
    client: Any, queue: Queue, ids: list[str], env: dict[str, str], workers: int
) -> Throughput:
    """Start ``workers`` worker processes on a filled queue; measure until every job is done."""
    before, cpu_before = commands(client), cpu(client)
    names = [["-m", "workers.pool", f"bench-{os.getpid()}-{n}"] for n in range(workers)]
    with children(names, env, REPO):
        wait_until(
            lambda: queue.finished_job_registry.count + queue.failed_job_registry.count >= len(ids),
            300,
            f"{len(ids)} jobs",
        )
    spent = commands(client) - before
    used = [1000 * (b - a) / len(ids) for a, b in zip(cpu_before, cpu(client), strict=True)]
    jobs = [j for j in Job.fetch_many(ids, connection=client, serializer=queue.serializer) if j]
    ended = sorted(j.ended_at.timestamp() for j in jobs if j.ended_at is not None)
    low, high = int(len(ended) * 0.1), int(len(ended) * 0.9) - 1
    rate = (high - low) / (ended[high] - ended[low])
    failed = queue.failed_job_registry.count
    for registry in (queue.finished_job_registry, queue.failed_job_registry):
        for name in registry.get_job_ids():
            registry.remove(name, delete_job=True)
    return Throughput(len(ids), rate, spent / len(ids), failed, (used[0], used[1], used[2]))


def commands(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def cpu(client: Any) -> tuple[float, float, float]:
    """CPU seconds so far: finished child processes, redis-server, this process."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    info = client.info("cpu")
    return (
        children.ru_utime + children.ru_stime,
        float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        time.process_time(),
    )


# --- queueing calls -------------------------------------------------------------------------------


def dial_many(client: TelephonyClient, count: int) -> tuple[list[str], float]:
    """Queue ``count`` calls through the Python API; their ids and calls per second."""
    started = time.perf_counter()
    ids = [client.dial(f"bench-{n}", phone_number=DESTINATION).id for n in range(count)]
    return ids, count / (time.perf_counter() - started)


def post_calls(url: str, clients: int, seconds: float) -> tuple[float, int]:
    """``POST /v1/calls`` from ``clients`` processes (keep-alive): calls/s and failures."""
    body = json.dumps({"room": "bench", "phoneNumber": DESTINATION}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    done, failed = closed_loop(url, "/v1/calls", [[(headers, body)]] * clients, seconds, 202)
    return done / seconds, failed


@contextlib.contextmanager
def served(env: dict[str, str], workers: int, threads: int) -> Iterator[str]:
    """``telephony serve`` (granian) on a free port; yields its URL."""
    port = free_port()
    command = ["-m", "telephony", "serve", "--port", str(port), "--workers", str(workers),
               "--threads", str(threads)]  # fmt: skip
    with children([command], env, REPO) as started:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/healthz", started, timeout=30)
        yield url


# --- command latency during a burst (issue #24) --------------------------------------------------

#: Daily's own dial-out limit, ours the same: a burst's starts wait their turn.
BURST_LIMIT = "50/1s"
WEBHOOK_SECRET = "YmVuY2gtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXMhIQ=="


def percentiles(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    p50, p95, top = (round(x * 1000) for x in (at(0.5), at(0.95), ordered[-1]))
    return f"p50 {p50} ms, p95 {p95} ms, max {top} ms"


def command_latency(burst: int, live: int, workers: int) -> int:
    """``live`` answered calls, then a burst of ``burst`` starts paced at ``BURST_LIMIT``; while
    it is queued, a DTMF and then a stop for every live call through ``POST /v1/calls/...``.
    Prints 202 → Daily (the sandbox's log of the request) for stop and DTMF."""
    import requests

    from telephony.store import unix_time

    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp,
        RedisServer(Path(tmp) / "redis") as server,
        Sandbox(api_key=API_KEY, rate_limit=RateLimit.parse(BURST_LIMIT)) as sandbox,
    ):
        env = {
            **os.environ, "PYTHONPATH": str(REPO), "REDIS_URL": server.url,
            "DAILY_API_URL": sandbox.url, "DAILY_API_KEY": API_KEY,
            "DAILY_WEBHOOK_SECRET": WEBHOOK_SECRET, "TELEPHONY_API_TOKEN": TOKEN,
            "TELEPHONY_DIALOUT_LIMIT": BURST_LIMIT, "TELEPHONY_KEY_PREFIX": "bench",
            "TELEPHONY_QUEUE": "bench", "TELEPHONY_SPOOL_DIR": str(Path(tmp) / "spool"),
        }  # fmt: skip
        settings = Settings.from_env(env)
        client: Any = redis.Redis.from_url(server.url)
        keys = Keys(settings.key_prefix)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        pool = [["-m", "telephony", "worker", "-n", str(workers)]]
        with served(env, 1, 4) as url, children(pool, env, REPO), \
                TelephonyClient(settings=settings) as api:  # fmt: skip
            sandbox.register_webhook(f"{url}/webhooks/daily", WEBHOOK_SECRET)
            live_ids = [api.dial(f"live-{n}", phone_number=DESTINATION).id for n in range(live)]
            wait_until(lambda: all(client.hget(keys.call(c), "state") == b"answered"
                                   for c in live_ids), 60, "the live calls to answer")  # fmt: skip
            sessions = {client.hget(keys.call(c), "sessionId").decode(): c for c in live_ids}
            for n in range(burst):  # a room each, as Daily allows 5 legs in one
                api.dial(f"burst-{n}", phone_number=DESTINATION)
            asked: dict[tuple[str, str], float] = {}
            session = requests.Session()
            for kind, body in (("dtmf", {"tones": "1#"}), ("stop", None)):
                for call_id in live_ids:
                    answer = session.post(f"{url}/v1/calls/{call_id}/{kind}", json=body,
                                          headers=auth, timeout=10)  # fmt: skip
                    assert answer.status_code == 202, answer.text
                    asked[(kind, call_id)] = time.time()
                    time.sleep(0.05)
            pending = burst - sum(1 for s in sandbox.starts() if s["userId"] not in live_ids)

            def reached() -> dict[tuple[str, str], float]:
                found = {}
                for kind, path in (("dtmf", "dialOut/sendDTMF"), ("stop", "dialOut/stop")):
                    log = sandbox.core.api_log.page({"source": "api", "url": path,
                                                     "limit": "1000"})["data"]  # fmt: skip
                    for entry in log:
                        call_id = sessions.get(json.loads(entry["request"])["sessionId"])
                        if call_id is not None:
                            found[(kind, call_id)] = unix_time(entry["createdAt"]) or 0.0
                return found

            wait_until(lambda: len(reached()) >= len(asked), 120, "every command at Daily")
            got = reached()
    for kind in ("stop", "dtmf"):
        delays = [got[key] - asked[key] for key in asked if key[0] == kind and key in got]
        print(f"{kind:<5} 202 -> Daily ({len(delays)} of {live}): {percentiles(delays)}")
    print(f"burst: {burst} starts paced at {BURST_LIMIT}, {workers} workers + the pool's reserve; "
          f"{pending} starts still waiting when the last command was answered 202")  # fmt: skip
    print(f"total {time.monotonic() - began:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per throughput run")
    parser.add_argument("--workers", type=int, default=2, help="RQ worker processes")
    parser.add_argument("--seconds", type=float, default=3.0, help="per HTTP enqueue run")
    parser.add_argument("--clients", type=int, default=4, help="HTTP client processes")
    parser.add_argument("--server-workers", type=int, default=2, help="granian workers")
    parser.add_argument("--server-threads", type=int, default=2, help="granian threads each")
    parser.add_argument(
        "--commands",
        type=int,
        metavar="BURST",
        default=0,
        help="instead: stop and DTMF latency during a burst of BURST starts",
    )
    parser.add_argument("--live", type=int, default=20, help="answered calls to command")
    args = parser.parse_args(argv)
    if args.commands:
        return command_latency(args.commands, args.live, max(args.workers, 4))
    began = time.monotonic()

    with (
        tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp,
        RedisServer(Path(tmp) / "redis") as server,
        Sandbox(
            api_key=API_KEY,
            time_scale=SANDBOX_TIME_SCALE,
            rate_limit=RateLimit.parse(UNLIMITED),
        ) as sandbox,
    ):
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "REDIS_URL": server.url,
            "DAILY_API_URL": sandbox.url,
            "DAILY_API_KEY": API_KEY,
            "TELEPHONY_API_TOKEN": TOKEN,
            "TELEPHONY_DIALOUT_LIMIT": UNLIMITED,
            "TELEPHONY_KEY_PREFIX": "bench",
            "TELEPHONY_QUEUE": "bench",
        }
        settings = Settings.from_env(env)
        client: Any = redis.Redis.from_url(server.url)
        queue = make_queue(client, settings)

        noop_ids = [queue.enqueue("os.getpid", result_ttl=600).id for _ in range(args.jobs)]
        noop = run_jobs(client, queue, noop_ids, env, args.workers)

        with TelephonyClient(settings=settings) as api:
            call_ids, dial_rate = dial_many(api, args.jobs)
        start_ids = [job_id(settings, "start", call_id, 1) for call_id in call_ids]
        dialout = run_jobs(client, queue, start_ids, env, args.workers)
        placed = [s for s in sandbox.starts() if s["status"] == 200]
        keys = Keys(settings.key_prefix)
        ringing = sum(
            1 for call_id in call_ids if client.hget(keys.call(call_id), "state") == b"ringing"
        )

        with served(env, args.server_workers, args.server_threads) as url:
            post_calls(url, 1, 0.5)  # warm-up: connections, imports, Lua script cache
            single, single_failed = post_calls(url, 1, args.seconds)
            many, many_failed = post_calls(url, args.clients, args.seconds)
        redis_version = client.info("server")["redis_version"]

    print(
        f"host: {os.cpu_count()} CPUs, Python {platform.python_version()}, redis-server "
        f"{redis_version}, rq {version('rq')}, granian {version('granian')}"
    )
    print(
        f"workers: {args.workers} processes (SimpleWorker, JSON serializer), "
        f"pacing lifted ({UNLIMITED} ours and the sandbox's)"
    )
    print()
    print(
        f"{'job':<24} {'jobs':>5} {'jobs/s':>7} {'redis cmds':>10} {'failed':>6}"
        f"   CPU ms/job: {'workers':>7} {'redis':>6} {'sandbox':>7}"
    )
    for name, run in (("no-op (os.getpid)", noop), ("start_dialout (sandbox)", dialout)):
        workers_ms, redis_ms, sandbox_ms = run.cpu
        print(
            f"{name:<24} {run.jobs:>5} {run.rate:>7.0f} {run.commands:>10.1f} {run.failed:>6}"
            f"               {workers_ms:>7.2f} {redis_ms:>6.2f} {sandbox_ms:>7.2f}"
        )
    print(f"dial-out / no-op: {dialout.rate / noop.rate:.2f}x (goal >= 0.8x)")
    print(f"dial-outs placed at the sandbox: {len(placed)}, calls now ringing: {ringing}")
    print()
    print("queueing calls (no worker running):")
    print(f"  TelephonyClient.dial, 1 thread:              {dial_rate:>6.0f} calls/s")
    print(
        f"  POST /v1/calls, 1 client:                    {single:>6.0f} calls/s"
        f"  ({single_failed} failed)"
    )
    print(
        f"  POST /v1/calls, {args.clients} client processes:         {many:>6.0f} calls/s"
        f"  ({many_failed} failed)"
    )
    print(
        f"  (telephony serve: granian, {args.server_workers} workers x "
        f"{args.server_threads} threads)"
    )
    print(f"total {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

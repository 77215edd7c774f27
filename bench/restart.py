"""Timers and workers through a Redis restart: ``python bench/restart.py``.

A real ``telephony worker`` pool on a private ``redis-server`` with AOF. ``--timers`` jobs are
scheduled over ``--spread`` seconds, plus retrying jobs; a few seconds in, Redis is stopped
for each of ``--outages`` seconds and started again on the same port and directory. Printed
per outage: jobs that never ran or ran twice, the pool's children that exited, and how long
after Redis's return every job due by then had run (the worst lateness counted from
``max(due, return)``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import redis
from common import children, version, wait_until  # bench/common.py
from rq import Queue, Retry, get_current_job
from rq.serializers import JSONSerializer

from telephony.redis_server import RedisServer

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def tick(runs: str, name: str) -> None:
    """The benchmark's job: note when ``name`` ran (and how often), by the worker's client."""
    job = get_current_job()
    assert job is not None
    pipe = job.connection.pipeline()
    pipe.hincrby(runs, name, 1)
    pipe.hsetnx(f"{runs}:at", name, time.time())
    pipe.execute()


def flaky(runs: str, name: str) -> None:
    """Fails its first run (retried through the scheduler), then ticks."""
    job = get_current_job()
    assert job is not None
    if job.connection.hincrby(f"{runs}:tries", name, 1) == 1:
        raise RuntimeError("planned failure")
    tick(runs, name)


def pool_children(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(line) for line in found.split()}


def one_outage(outage: float, timers: int, spread: float, workers: int, base: Path) -> str:
    server = RedisServer(base / f"redis-{outage:g}", appendonly=True).start()
    client = redis.Redis.from_url(server.url)
    prefix = f"b{uuid.uuid4().hex[:8]}"
    queue = Queue(f"{prefix}-q", connection=client, serializer=JSONSerializer)
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{BENCH}",  # the workers import this file's jobs
        "REDIS_URL": server.url,
        "DAILY_API_KEY": "bench",
        "TELEPHONY_KEY_PREFIX": prefix,
        "TELEPHONY_QUEUE": queue.name,
    }
    runs = f"{prefix}:runs"
    try:
        pool_log = base / f"pool-{outage:g}.log"  # RQ logs every planned failure
        command = [["-m", "telephony", "worker", "-n", str(workers)]]
        with children(command, env, REPO, log=pool_log) as [pool]:
            wait_until(lambda: len(pool_children(pool.pid)) == workers + 2, 30, "the pool")
            before = pool_children(pool.pid)
            start = time.time()
            due = {}
            for i in range(timers):
                delay = 1 + spread * i / max(1, timers - 1)
                name = f"t{i}"
                due[name] = start + delay
                queue.enqueue_in(timedelta(seconds=delay), "restart.tick", runs, name)
            for i in range(timers // 20):
                name = f"f{i}"
                due[name] = start
                queue.enqueue("restart.flaky", runs, name, retry=Retry(1, interval=1))
            time.sleep(max(0.0, start + 4 - time.time()))
            server.stop()
            time.sleep(outage)
            server.start()
            back = time.time()
            wait_until(lambda: client.hlen(runs) == len(due), spread + outage + 120, "every job")
            counts = {k.decode(): int(v) for k, v in client.hgetall(runs).items()}
            ran_at = {k.decode(): float(v) for k, v in client.hgetall(f"{runs}:at").items()}
            late = max(ran_at[name] - max(due[name], back) for name in due)
            exited = len(before - pool_children(pool.pid))
    finally:
        client.close()
        server.stop()
    never = len(due) - len(counts)
    twice = sum(1 for n in counts.values() if n > 1)
    return f"| {outage:g} s | {len(due)} | {never} | {twice} | {exited} | {late:.2f} s |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outages", default="2,10,45", help="seconds, comma-separated")
    parser.add_argument("--timers", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    print(f"rq {version('rq')}, redis-py {version('redis')}, {args.workers} workers")
    print("| outage | jobs | never ran | ran twice | children exited | caught up after return |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as base:
        for outage in (float(o) for o in args.outages.split(",")):
            row = one_outage(outage, args.timers, args.spread, args.workers, Path(base))
            print(row, flush=True)


if __name__ == "__main__":
    main()

"""``Pool``: the supervisor of ``telephony worker -n N``, as a real process tree."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from conftest import Processes, wait_for
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from support.pool import pool_env

from telephony.config import Settings
from telephony.defaults import SCHEDULER_INTERVAL, WORKER_REDIS_BACKOFF_CAP
from telephony.dispatch import WATCHDOG_JOB
from telephony.redis_server import RedisServer

pytestmark = pytest.mark.slow


def _stat(pid: str) -> tuple[int, int] | None:
    """(parent pid, process group) of a live process; None for a zombie or a gone one."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[2]))


def processes_where(index: int, value: int) -> set[int]:
    """Live pids whose parent (``index`` 0) or process group (1) is ``value``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(entry)
            if stat is not None and stat[index] == value:
                found.add(int(entry))
    return found


def scheduler_pid(client: redis.Redis, queue_name: str) -> int | None:
    """The pid of the scheduler holding the queue's lock, from what it registered in Redis."""
    name = client.get(f"rq:scheduler-lock:{queue_name}")
    pid = name and client.hget(b"rq:scheduler:" + name, "pid")
    return int(pid) if pid else None


def pool_children(pool_pid: int, workers: int) -> set[int]:
    """Wait until the pool runs ``workers`` workers, its scheduler, its periodic work and its
    command reserve; their pids."""
    found: set[int] = wait_for(
        lambda: (now := processes_where(0, pool_pid)) and len(now) == workers + 3 and now,
        10,
        f"the pool's {workers} workers, its scheduler and its periodic work",
    )
    return found


def test_pool_keeps_its_size_and_stops_without_leftovers(
    redis_url: str, settings: Settings, redis_client: redis.Redis, queue: Queue, tmp_path: Path
) -> None:
    env = pool_env(redis_url, settings.key_prefix, settings.queue_name)

    def finished(name: str) -> bool:
        job = Job.fetch(name, connection=redis_client, serializer=queue.serializer)
        return job.get_status(refresh=True) == JobStatus.FINISHED

    processes = Processes(env, tmp_path)
    pool = processes.running[processes.spawn(["-m", "telephony", "worker", "-n", "2"], "pool")]
    children: set[int] = set()
    try:
        children |= pool_children(pool.pid, 2)
        scheduler = wait_for(
            lambda: scheduler_pid(redis_client, queue.name), 10, "the scheduler to take its lock"
        )
        assert scheduler in children

        # The workers take jobs from the queue (JSON arguments, functions by name).
        job = queue.enqueue(WATCHDOG_JOB, "no-such-call", 0)
        wait_for(lambda: finished(job.id), 10, "a worker to run the job")

        # A worker that dies (OOM killer, a crash) is replaced.
        victim = next(iter(children - {scheduler}))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in pool_children(pool.pid, 2), 10, "a replacement worker")
        children |= pool_children(pool.pid, 2)

        # The scheduler killed alone is restarted under its name and takes its lock back at
        # once: a job scheduled half a second ahead still runs within 5 s.
        os.kill(scheduler, signal.SIGKILL)
        later = queue.enqueue_in(timedelta(seconds=0.5), WATCHDOG_JOB, "no-such-call", 1)
        wait_for(lambda: finished(later.id), 5, "a scheduled job to run after the crash")
        assert scheduler_pid(redis_client, queue.name) not in (None, scheduler)
        children |= pool_children(pool.pid, 2)

        # SIGTERM: every worker finishes and the pool exits cleanly, leaving nothing behind;
        # the scheduler gave its lock back, so another pool's takes over at once.
        pool.terminate()
        assert pool.wait(15) == 0
        leftovers = processes_where(1, pool.pid) | {
            pid for child in children for pid in processes_where(1, child)
        }
        assert leftovers == set(), f"left running: {leftovers}"
        assert not redis_client.exists(f"rq:scheduler-lock:{queue.name}")
    finally:
        processes.close()
        for child in children:  # each child leads its own group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGKILL)


def test_children_do_not_outlive_a_killed_pool(
    redis_url: str, settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A pool killed by SIGKILL (the OOM killer) takes its children with it: no orphaned
    worker keeps taking jobs, and the scheduler's lock is free for another pool at once."""
    env = pool_env(redis_url, settings.key_prefix, settings.queue_name)
    processes = Processes(env, tmp_path)
    name = processes.spawn(["-m", "telephony", "worker", "-n", "1"], "pool")
    pool = processes.running[name]
    children = pool_children(pool.pid, 1)
    lock = f"rq:scheduler-lock:{settings.queue_name}"
    try:
        wait_for(lambda: redis_client.exists(lock), 10, "the scheduler to take its lock")
        processes.kill(name)
        wait_for(lambda: not any(_stat(str(pid)) for pid in children), 10, "the children to end")
        assert not redis_client.exists(lock)
    finally:
        processes.close()
        for child in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGKILL)


def test_a_job_lost_between_the_queue_and_a_worker_runs_anyway(
    redis_url: str, settings: Settings, redis_client: redis.Redis, queue: Queue, tmp_path: Path
) -> None:
    """A job taken off the queue (into RQ's intermediate queue) by a worker that died, or
    whose Redis restarted before answering, is queued again by the scheduler and runs."""
    counts = f"{settings.key_prefix}:runs"
    job = queue.enqueue("tests.support.jobs.tick", counts, "lost")
    assert redis_client.lmove(queue.key, queue.intermediate_queue_key) == job.id.encode()
    env = pool_env(redis_url, settings.key_prefix, settings.queue_name)
    processes = Processes(env, tmp_path)
    processes.spawn(["-m", "telephony", "worker", "-n", "1"], "pool")
    try:
        wait_for(lambda: redis_client.hget(counts, "lost") == b"1", 15, "the lost job to run")
        assert redis_client.llen(queue.intermediate_queue_key) == 0
    finally:
        processes.close()


def test_a_job_whose_record_is_gone_when_it_finishes_is_not_failed(
    redis_url: str, settings: Settings, redis_client: redis.Redis, queue: Queue, tmp_path: Path
) -> None:
    """Its success was recorded already (a concurrent run of the same id, or a first try of
    RQ's bookkeeping whose reply a Redis restart lost): RQ's second look, to delete the record
    (``result_ttl=0``), must not turn a job that ran into a failure kept for a week."""
    counts = f"{settings.key_prefix}:runs"
    job = queue.enqueue("tests.support.jobs.vanish", counts, "gone", result_ttl=0)
    processes = Processes(pool_env(redis_url, settings.key_prefix, settings.queue_name), tmp_path)
    processes.spawn(["-m", "telephony", "worker", "-n", "1"], "pool")
    try:
        wait_for(lambda: redis_client.hget(counts, "gone") == b"1", 15, "the job to run")
        wait_for(lambda: queue.started_job_registry.count == 0, 10, "the worker to finish it")
        assert queue.failed_job_registry.get_job_ids() == []
        assert not redis_client.exists(Job.key_for(job.id))
    finally:
        processes.close()


def restart(server: RedisServer, down: float) -> RedisServer:
    """Stop ``server`` (SIGTERM: the AOF is flushed), keep it down ``down`` seconds (the fault
    under test), and start it again on the same port and directory."""
    server.stop()
    time.sleep(down)
    return server.start()


def test_pool_rides_out_a_redis_restart(
    own_redis: RedisServer, key_prefix: str, tmp_path: Path
) -> None:
    """Redis restarted for 2 s under 200 timers and retrying jobs: every job runs once (each
    retried one as planned), nothing stays overdue, and no worker process exits."""
    client = redis.Redis.from_url(own_redis.url)
    queue = Queue(f"{key_prefix}-q", connection=client, serializer=JSONSerializer)
    env = pool_env(own_redis.url, key_prefix, queue.name)
    processes = Processes(env, tmp_path)
    pool = processes.running[processes.spawn(["-m", "telephony", "worker", "-n", "2"], "pool")]
    try:
        children = pool_children(pool.pid, 2)
        counts = f"{key_prefix}:runs"
        start = time.time()
        timers = 200
        for i in range(timers):
            due = timedelta(seconds=1 + 11 * i / (timers - 1))  # due over 1..12 s
            queue.enqueue_in(due, "tests.support.jobs.tick", counts, f"timer-{i}")
        retrying = [f"flaky-{i}" for i in range(10)]
        for name in retrying:
            queue.enqueue(
                "tests.support.jobs.flaky", counts, name, 2, retry=Retry(max=3, interval=[1, 2])
            )
        wait_for(lambda: client.hlen(counts) >= 20, 10, "the first timers to run")

        down = 2.0
        restart(own_redis, down)
        back = time.time()
        # The scheduler finds Redis again at its next retry (backoff capped at
        # WORKER_REDIS_BACKOFF_CAP), then moves due jobs at its next pass: until then a job due
        # during the outage may be late by the outage and both of those.
        recovering = WORKER_REDIS_BACKOFF_CAP + SCHEDULER_INTERVAL

        def all_ran() -> bool:
            # RQ scores scheduled jobs in whole seconds, rounded down: 3 s past a score is
            # more than 2 s past the job's real due time.
            now = time.time()
            late = 3 if now > back + recovering else 3 + down + recovering
            overdue = client.zrangebyscore(f"rq:scheduled:{queue.name}", "-inf", now - late)
            assert not overdue, f"{len(overdue)} jobs overdue: {overdue[:5]}\n{processes.logs(400)}"
            return client.hlen(counts) == timers + len(retrying) and all(
                int(client.hget(counts, name) or 0) == 3 for name in retrying
            )

        # Within 15 s of Redis's return, or 2 s after the last timer is due if that is later.
        wait_for(all_ran, max(15.0, start + 14 - time.time()), "every job to run")
        runs = {name.decode(): int(n) for name, n in client.hgetall(counts).items()}
        assert {n for name, n in runs.items() if name.startswith("timer-")} == {1}
        assert processes_where(0, pool.pid) == children, processes.logs()
    finally:
        processes.close()
        client.close()

"""``Pool``: the supervisor of ``telephony worker -n N``, as a real process tree."""

from __future__ import annotations

import contextlib
import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from conftest import DAILY_API_KEY, Processes, wait_for
from rq import Queue
from rq.job import Job, JobStatus

from telephony.calls import WATCHDOG_JOB
from telephony.config import Settings

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


def test_pool_keeps_its_size_and_stops_without_leftovers(
    redis_url: str, settings: Settings, redis_client: redis.Redis, queue: Queue, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "DAILY_API_KEY": DAILY_API_KEY,
        "TELEPHONY_KEY_PREFIX": settings.key_prefix,
        "TELEPHONY_QUEUE": settings.queue_name,
    }

    def finished(name: str) -> bool:
        job = Job.fetch(name, connection=redis_client, serializer=queue.serializer)
        return job.get_status(refresh=True) == JobStatus.FINISHED

    processes = Processes(env, tmp_path)
    pool = processes.running[processes.spawn(["-m", "telephony", "worker", "-n", "2"], "pool")]
    workers: set[int] = set()
    try:
        wait_for(lambda: len(processes_where(0, pool.pid)) == 2, 10, "two workers")
        workers |= processes_where(0, pool.pid)

        # The workers take jobs from the queue (JSON arguments, functions by name).
        job = queue.enqueue(WATCHDOG_JOB, "no-such-call", 0)
        wait_for(lambda: finished(job.id), 10, "a worker to run the job")

        # A worker that dies (OOM killer, a crash) is replaced. The victim is the one that
        # runs RQ's scheduler (in a child process of its own), the hardest one to clean up.
        victim = wait_for(
            lambda: next((w for w in workers if processes_where(0, w)), None),
            10,
            "a worker to start RQ's scheduler",
        )
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: (now := processes_where(0, pool.pid)) and len(now) == 2 and victim not in now,
            10,
            "a replacement worker",
        )
        workers |= processes_where(0, pool.pid)

        # The scheduler was taken over: scheduled jobs (retries, timers) still run.
        later = queue.enqueue_in(timedelta(seconds=0.1), WATCHDOG_JOB, "no-such-call", 1)
        wait_for(lambda: finished(later.id), 10, "a scheduled job to run after the crash")

        # SIGTERM: every worker finishes and the pool exits cleanly, leaving nothing behind.
        pool.terminate()
        assert pool.wait(15) == 0
        leftovers = processes_where(1, pool.pid) | {
            pid for worker in workers for pid in processes_where(1, worker)
        }
        assert leftovers == set(), f"left running: {leftovers}"
    finally:
        processes.close()
        for worker in workers:  # each worker leads its own group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker, signal.SIGKILL)

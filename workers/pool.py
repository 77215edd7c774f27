"""``telephony worker -n N``: a supervised pool of RQ workers, the scheduler, periodic work.

Each worker child runs one ``SimpleWorker`` (jobs run in the worker process itself, so the
pooled Daily and Redis connections are reused across jobs). One more child runs the scheduler
(:mod:`workers.scheduler`), which moves due scheduled jobs (retries, pacing waits, watchdogs)
onto the queue, and one the periodic work (:mod:`workers.periodic`: the sweep that takes up
open calls nothing looks after). A child that dies (killed, OOM) is replaced; the scheduler
and the periodic work are restarted under the same name, so each takes its lock back at once.
SIGINT/SIGTERM stop every child (each worker finishes its current job) and then the pool.
Every child rides out a Redis outage of about half a minute (:mod:`telephony.reconnect`).

``python -m workers.pool NAME`` runs one worker named NAME, with RQ's own scheduler in a
process it forks, configured by the environment (the tests and benchmarks start workers this
way); ``telephony worker`` is the way to run them in production.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable
from types import FrameType
from typing import Any

from rq import Queue, SimpleWorker
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.serializers import JSONSerializer

from telephony import defaults
from telephony.config import Settings
from telephony.dispatch import make_queues
from telephony.processes import end_group, finish_group, signal_group
from telephony.store import connect
from workers.periodic import run_periodic
from workers.scheduler import run_scheduler

log = logging.getLogger(__name__)


class Worker(SimpleWorker):
    """RQ's ``SimpleWorker`` whose command channel stops within a second.

    RQ listens for commands (``rq suspend``, stop-job) on a pub/sub thread that waits up to
    60 s per read, and on a warm shutdown unsubscribes before stopping that thread; redis-py 8
    then joins the thread with no timeout while it waits out those 60 s for a subscription.
    Measured with rq 3.0.0 and redis-py 8.2.0: a pool of idle workers had not exited 20 s after
    SIGTERM (its own deadline is 30 s, the pool test waited 15); reading in 1 s slices, it
    exits in about 0.5 s. A read is a socket timeout, not a Redis command.

    And a job that ran is never recorded failed because its record was gone by the time RQ
    went to delete it (:meth:`handle_job_success`).
    """

    def subscribe(self) -> None:
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]  # rq: None
            sleep_time=defaults.WORKER_PUBSUB_READ,
            daemon=True,
            exception_handler=self._pubsub_exception_handler,
        )

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: Any, execution: Any
    ) -> None:
        """RQ's, except that a job whose record is gone when it finishes is not failed.

        With ``result_ttl=0`` RQ reads the job's status in order to delete it, and raises
        when the record is already gone: a concurrent run of the same id finished first, or
        a first try of this bookkeeping committed and a Redis restart lost its reply (redis-py
        then retries it). RQ would then record the job as failed, for a week, although it ran
        and its success is recorded. Found by ``bench/chaos.py`` (a start job, once in about
        twenty runs).
        """
        try:
            super().handle_job_success(
                job=job, queue=queue, started_job_registry=started_job_registry,
                execution=execution,
            )  # fmt: skip
        except InvalidJobOperation:
            if self.connection.hget(job.key, "status"):
                raise
            # What is left of it (a heartbeat written after the delete) goes as RQ meant to.
            self.connection.delete(job.key)
            self.log.warning("Worker %s: job %s finished; its record was already gone", self.name,
                             job.id)  # fmt: skip
            with self.connection.pipeline() as pipeline:
                self.cleanup_execution(job, pipeline=pipeline, execution=execution)
                pipeline.execute()


def run_worker(
    settings: Settings,
    name: str,
    burst: bool = False,
    level: str = "WARNING",
    with_scheduler: bool = True,
    commands_only: bool = False,
) -> None:
    """One worker, in the current process, until stopped (or idle, with ``burst``), taking
    from the command lane first; ``commands_only``: from it alone (a pool's reserve);
    ``with_scheduler``: RQ's own scheduler in a process it forks (outside the pool)."""
    client = connect(settings, "a worker", patient=True)
    queues = make_queues(client, settings)[: 1 if commands_only else None]
    worker = Worker(queues, connection=client, name=name, serializer=JSONSerializer)
    worker.work(burst=burst, with_scheduler=with_scheduler, logging_level=level)


def run_reserve(settings: Settings, name: str) -> None:
    """The pool's reserve: a worker on the command lane alone, so a command is taken at once
    even while every other worker is busy with starts."""
    run_worker(settings, name, with_scheduler=False, commands_only=True)


#: A pool child that is not a worker (the scheduler, the periodic work): run under a name
#: that is the same across its restarts.
Service = Callable[[Settings, str], None]


def _die_with(pool: int) -> None:
    """Have Linux send this child SIGTERM when the pool dies, even by SIGKILL: a child in a
    group of its own would otherwise live on, orphaned, taking jobs nobody supervises."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != pool:  # the pool died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _child(settings: Settings, name: str, level: str, service: Service | None, pool: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool decides; SIGTERM stops the child
    # Forked with the pool's own SIGTERM handler, which only flags the pool's copy: a SIGTERM
    # before the child installs its own (RQ's, the scheduler's) was swallowed, and the pool
    # then waited its whole shutdown deadline for that child. Until then, SIGTERM ends it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.setpgid(0, 0)  # a group of its own: whatever it forks can be found later
    _die_with(pool)
    if service is None:
        run_worker(settings, name, level=level, with_scheduler=False)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s")
        service(settings, name)


class Pool:
    def __init__(self, settings: Settings, size: int, level: str = "WARNING") -> None:
        self.settings = settings
        self.size = size
        self.level = level
        self.children: dict[str, Any] = {}  # name -> a forked multiprocessing Process
        self.stopping = False
        self._context = mp.get_context("fork")
        # Names the same across a service's restarts (so it takes its lock back at once) and
        # unique per pool (so two pools never share a lock's ownership).
        where = f"{socket.gethostname()}-{os.getpid()}"
        self.services: dict[str, Service] = {
            f"telephony-scheduler-{where}": run_scheduler,
            f"telephony-periodic-{where}": run_periodic,
            f"telephony-commands-{where}": run_reserve,
        }

    def _spawn(self, name: str | None = None) -> None:
        """Start a worker, or the service of that ``name`` (under the same name)."""
        name = name or f"telephony-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        args = (self.settings, name, self.level, self.services.get(name), os.getpid())
        process = self._context.Process(target=_child, args=args, name=name, daemon=False)
        process.start()
        assert process.pid is not None  # started
        # The child makes itself a group too; doing it here as well closes the race in which
        # the pool signals the child's group before the child has made it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.setpgid(process.pid, process.pid)
        self.children[name] = process

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        for service in self.services:
            self._spawn(service)
        for _ in range(self.size):
            self._spawn()
        while not self.stopping:
            for name, process in list(self.children.items()):
                if not process.is_alive():
                    log.warning("%s exited (%s); starting another", name, process.exitcode)
                    del self.children[name]
                    # Whatever the dead child left in its group is ended before it is replaced.
                    end_group(process.pid, defaults.WORKER_LEFTOVER_GRACE)
                    self._spawn(name if name in self.services else None)
            time.sleep(0.2)
        # Warm shutdown, every group at once: each worker finishes its current job, the
        # scheduler releases its lock; then whatever is left of each group is killed.
        for process in self.children.values():
            signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.children.values():
            process.join(max(0.0, deadline - time.monotonic()))
            finish_group(process.pid, deadline)
            process.join()
        return 0


if __name__ == "__main__":
    run_worker(Settings.from_env(), sys.argv[1])

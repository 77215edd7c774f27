"""``telephony worker -n N``: a supervised pool of RQ workers, with RQ's scheduler.

Each child runs one ``SimpleWorker`` (jobs run in the worker process itself, so the pooled
Daily and Redis connections are reused across jobs). A child that dies — killed, OOM — is
replaced; SIGINT/SIGTERM stop every child (each finishes its current job) and then the pool.
Every worker runs with the scheduler; RQ elects one of them to move due scheduled jobs
(retries, pacing waits, watchdogs) onto the queue.

``python -m workers.pool NAME`` runs one worker named NAME, configured by the environment
(the tests and benchmarks start workers this way).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
import uuid
from types import FrameType
from typing import Any

from rq import SimpleWorker
from rq.serializers import JSONSerializer

from telephony import defaults
from telephony.calls import make_queue
from telephony.config import Settings
from telephony.processes import end_group, finish_group, signal_group
from telephony.store import connect

log = logging.getLogger(__name__)


def run_worker(settings: Settings, name: str, burst: bool = False, level: str = "WARNING") -> None:
    """One worker, in the current process, until stopped (or idle, with ``burst``)."""
    client = connect(settings, "a worker")
    worker = SimpleWorker(
        [make_queue(client, settings)], connection=client, name=name, serializer=JSONSerializer
    )
    worker.work(burst=burst, with_scheduler=True, logging_level=level)


def _child(settings: Settings, name: str, level: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool decides; RQ handles SIGTERM
    os.setpgid(0, 0)  # a group of its own: what it forks (RQ's scheduler) can be found later
    run_worker(settings, name, level=level)


class Pool:
    def __init__(self, settings: Settings, size: int, level: str = "WARNING") -> None:
        self.settings = settings
        self.size = size
        self.level = level
        self.children: dict[str, Any] = {}  # name -> a forked multiprocessing Process
        self.stopping = False
        self._context = mp.get_context("fork")

    def _spawn(self) -> None:
        name = f"telephony-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        process = self._context.Process(
            target=_child, args=(self.settings, name, self.level), name=name, daemon=False
        )
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
        for _ in range(self.size):
            self._spawn()
        while not self.stopping:
            for name, process in list(self.children.items()):
                if not process.is_alive():
                    log.warning("worker %s exited (%s); starting another", name, process.exitcode)
                    del self.children[name]
                    # RQ's scheduler runs in a child of the worker and outlives a killed
                    # worker: SIGTERM lets it release its lock, so the next worker to start
                    # takes the scheduler over.
                    end_group(process.pid, defaults.WORKER_LEFTOVER_GRACE)
                    self._spawn()
            time.sleep(0.2)
        # Warm shutdown, every group at once: each worker finishes its current job, its
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

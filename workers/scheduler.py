"""RQ's scheduler as a process of its own, supervised by the pool: timers outlive any outage.

RQ runs its scheduler in a process forked by one worker and checks on it only every ten
minutes; a scheduler that died (a Redis restart did it in under a second) left every retry,
pacing wait and watchdog stranded for that long (``../shared/design.md``, "RQ after a Redis
restart"). Here the pool runs the scheduler as one more child and restarts it when it dies.

- **A stable name per pool**: the lock (``rq:scheduler-lock:<queue>``) holds its owner's name,
  and rq 3 lets the same name take it back at once; a restarted scheduler, or one whose lock
  came back from the AOF after a Redis restart, resumes without waiting for the 61 s TTL.
- **Outages are waited out, not fatal**: a tick that finds Redis away is logged once per
  outage (:mod:`telephony.reconnect`) and tried again on the next tick.
- **Lost jobs are found**: a job a worker took but never started goes back on the queue
  (:class:`Rescue`).
- **A standby takes over**: a scheduler whose lock another pool holds asks for it on every
  tick, so it takes over within the lock's TTL when that pool dies (RQ asks every 10 min).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

import redis
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from telephony import defaults
from telephony.config import Settings
from telephony.dispatch import make_queues
from telephony.reconnect import OUTAGE
from telephony.store import connect

log = logging.getLogger(__name__)


def run_scheduler(settings: Settings, name: str) -> None:
    """Move due scheduled jobs onto the queue, and lost ones back onto it, every
    ``SCHEDULER_INTERVAL`` until SIGTERM."""
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    # Not patient: retrying the pipeline that moves due jobs after Redis ran it but died before
    # answering queues them twice (measured: a timer ran twice). A failed tick is simply the
    # next tick's work: what was moved is no longer due.
    # A read that never returns (a connection left half-open by the restart) must not stop
    # the scheduler for good: every command is bounded.
    client = connect(settings, "the scheduler", socket_timeout=defaults.SCHEDULER_SOCKET_TIMEOUT)
    queues = make_queues(client, settings)
    scheduler: Any = RQScheduler(  # rq's methods are untyped
        [queue.name for queue in queues],
        connection=client,
        interval=defaults.SCHEDULER_INTERVAL,
        logging_level=logging.getLogger().level,
        serializer=JSONSerializer,
        name=name,
    )
    rescues = [Rescue(client, queue) for queue in queues]
    wanted = {queue.name for queue in queues}
    born = False
    while not stopping.is_set():
        try:
            if not born:
                scheduler.register_birth()  # what `rq info` shows; expires with the heartbeat
                born = True
            if scheduler.acquired_locks != wanted and scheduler.acquire_locks():
                log.info("%s holds the scheduler lock", name)
            if scheduler.acquired_locks:
                scheduler.heartbeat()
                scheduler.enqueue_scheduled_jobs()
                for rescue in rescues:
                    rescue()
            OUTAGE.answered()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            OUTAGE.failed(error)  # one line per outage; the next tick tries again
        except Exception:
            log.exception("scheduler tick failed; trying again")
        stopping.wait(defaults.SCHEDULER_INTERVAL)
    with contextlib.suppress(redis.RedisError):
        scheduler.release_locks()  # the next scheduler takes over at once
        scheduler.register_death()


#: Move a job a worker took but never started back onto its queue, once.
#: KEYS: intermediate queue, queue, job hash. ARGV: job id.
_RESCUE = """
if redis.call('HGET', KEYS[3], 'status') ~= 'queued' then return 0 end
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
"""


class Rescue:
    """Jobs lost between the queue and a worker, put back on the queue.

    A worker takes a job by moving its id to RQ's intermediate queue (``BLMOVE``) and marks it
    started, removing it from there, in its next round trip. A worker killed in between, or a
    Redis that restarts after running the ``BLMOVE`` but before answering it (the worker's
    retry then takes the next job), leaves the id there, still "queued". RQ fails such a job
    after a minute or more (and only in a maintenance pass, every ten); a job that stays there
    ``RESCUE_AFTER`` seconds is put back on the queue instead. Our jobs are safe to run twice,
    so a worker merely slow to mark its job started costs nothing but a repeat.
    """

    def __init__(self, client: redis.Redis, queue: Any) -> None:
        self.client: Any = client
        self.queue = queue
        self.seen: dict[str, float] = {}  # job id -> when first seen there (monotonic)
        self._move = client.register_script(_RESCUE)

    def __call__(self) -> int:
        """One look (usually one ``LRANGE`` of an empty list); how many jobs were put back."""
        key = self.queue.intermediate_queue_key
        now = time.monotonic()
        ids = [raw.decode() for raw in self.client.lrange(key, 0, -1)]
        self.seen = {job_id: self.seen.get(job_id, now) for job_id in ids}
        moved = 0
        for job_id, since in list(self.seen.items()):
            if now - since >= defaults.RESCUE_AFTER:
                keys = [key, self.queue.key, Job.key_for(job_id)]
                moved += int(self._move(keys=keys, args=[job_id]))
                del self.seen[job_id]
        if moved:
            log.warning("%d jobs lost between the queue and a worker were queued again", moved)
        return moved

"""RQ's scheduler as a process of its own, supervised by the pool: timers outlive any outage.

RQ runs its scheduler in a process forked by one worker and checks on it only every ten
minutes; a scheduler that died (a Redis restart did it in under a second) left every retry,
pacing wait and watchdog stranded for that long (``../shared/design.md``, "RQ after a Redis
restart"). Here the pool runs the scheduler as one more child and restarts it when it dies.

- **A stable name per pool**: the lock (``rq:scheduler-lock:<queue>``) holds its owner's name,
  and rq 3 lets the same name take it back at once; a restarted scheduler, or one whose lock
  came back from the AOF after a Redis restart, resumes without waiting for the 61 s TTL.
- **Outages are waited out, not fatal**: the client is patient (:mod:`telephony.reconnect`),
  and a loop that still sees Redis away just tries again on the next tick.
- **A standby takes over**: a scheduler whose lock another pool holds asks for it on every
  tick, so it takes over within the lock's TTL when that pool dies (RQ asks every 10 min).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from types import FrameType
from typing import Any

import redis
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from telephony import defaults
from telephony.config import Settings
from telephony.store import connect

log = logging.getLogger(__name__)


def scheduler_name(pool_pid: int) -> str:
    """The name of the pool's scheduler: the same across its restarts, unique per pool."""
    return f"telephony-scheduler-{socket.gethostname()}-{pool_pid}"


def run_scheduler(settings: Settings, name: str) -> None:
    """Move due scheduled jobs onto the queue every ``SCHEDULER_INTERVAL`` until SIGTERM."""
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    client = connect(settings, "the scheduler", patient=True)
    scheduler: Any = RQScheduler(  # rq's methods are untyped
        [settings.queue_name],
        connection=client,
        interval=defaults.SCHEDULER_INTERVAL,
        logging_level=logging.getLogger().level,
        serializer=JSONSerializer,
        name=name,
    )
    wanted = {settings.queue_name}
    born = False
    while not stopping.is_set():
        try:
            if not born:
                scheduler.register_birth()  # what `rq info` shows; expires with the heartbeat
                born = True
            if scheduler.acquired_locks != wanted:
                scheduler.acquire_locks()
            if scheduler.acquired_locks:
                scheduler.heartbeat()
                scheduler.enqueue_scheduled_jobs()
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # an outage longer than the client's retries: logged there; next tick
        stopping.wait(defaults.SCHEDULER_INTERVAL)
    with contextlib.suppress(redis.RedisError):
        scheduler.release_locks()  # the next scheduler takes over at once
        scheduler.register_death()

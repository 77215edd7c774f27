"""Periodic work, run once across every pool: the sweep of open dial-outs, the check of
Daily's webhook (:mod:`telephony.webhook_health`) and reconciliation from room presence
(:func:`telephony.reconcile.presence`).

Each pool runs one periodic child (supervised like the scheduler, :mod:`workers.pool`). The
children of every pool contend for one Redis lock (``{p}:periodic``: rq's owner-named lock, as
the scheduler's, with a short TTL renewed on every tick); the holder runs each task when its
interval is due. A pool's child keeps its name across restarts, so a restarted one takes the
lock back at once; another pool's takes over within ``PERIODIC_LOCK_TTL`` after the holder's
pool dies.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import redis
from rq.scripts import acquire_or_refresh_lock, release_lock

from telephony import defaults
from telephony.config import Settings
from workers.context import Context

log = logging.getLogger(__name__)


@dataclass
class Task:
    name: str
    every: float
    run: Callable[[Context], Any]
    due: float = 0.0  # monotonic time of its next run: at once after taking the lock


def tasks(settings: Settings) -> list[Task]:
    """What the periodic work does, and how often."""
    from telephony import reconcile, webhook_health
    from workers.watchdog import sweep

    def webhook_check(ctx: Context) -> dict[str, Any]:
        return webhook_health.check(ctx.store, ctx.daily)

    def presence(ctx: Context) -> dict[str, int]:
        return reconcile.presence(ctx.store, ctx.daily)

    # In this order: a re-activation (and its replay from the log) comes before presence.
    return [
        Task("sweep", settings.sweep_interval, sweep),
        Task("webhook-health", settings.webhook_check_interval, webhook_check),
        Task("reconcile", settings.webhook_check_interval, presence),
    ]


def run_periodic(settings: Settings, name: str) -> None:
    """Hold the lock and run the due tasks, every second, until SIGTERM."""
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    ctx = Context.build(settings)
    lock = ctx.store.keys.periodic
    work = tasks(settings)
    holding = False
    while not stopping.is_set():
        try:
            held = (
                acquire_or_refresh_lock(ctx.redis, lock, name, defaults.PERIODIC_LOCK_TTL)
                != "taken"
            )
            if held and not holding:
                log.info("%s runs the periodic work", name)
                for task in work:
                    task.due = 0.0
            holding = held
            for task in work if holding else ():
                if time.monotonic() >= task.due and not stopping.is_set():
                    task.due = time.monotonic() + task.every
                    _run(task, ctx)
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # an outage longer than the client's retries: logged there; next tick
        stopping.wait(defaults.SCHEDULER_INTERVAL)
    if holding:
        with contextlib.suppress(redis.RedisError):
            release_lock(ctx.redis, lock, name)  # another pool's takes over at once


def _run(task: Task, ctx: Context) -> None:
    """One run of ``task``; a failure other than an outage is logged, and the task runs again
    at its next turn (the task logs what deserves an operator's attention)."""
    began = time.monotonic()
    try:
        outcome = task.run(ctx)
    except (redis.ConnectionError, redis.TimeoutError):
        raise
    except Exception:
        log.exception("periodic task %s failed", task.name)
        return
    log.debug("%s: %s (%.2f s)", task.name, outcome, time.monotonic() - began)

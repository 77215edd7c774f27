"""Riding out a Redis outage on the worker side: retry with backoff, one log line per outage.

redis-py 8 gives clients made by ``Redis.from_url`` no retries at all, and RQ's scheduler copies
its worker's connection settings: a 2 s Redis restart killed the scheduler and most workers
(``../shared/design.md``, "RQ after a Redis restart"). Workers, the scheduler and the periodic
work get :func:`patient_options` instead: every command is retried with exponential backoff for
about half a minute, and the process logs once when Redis goes away and once when it is back,
not a traceback per poll. The web tier and the CLI stay impatient: a request answers 503 at
once and the caller (Daily's retries, an operator) decides what to do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

from telephony import defaults

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Outage:
    """The process's view of Redis: reachable, or unreachable since when. Shared by every
    connection of the process (redis-py copies a ``Retry`` into each connection)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None

    def failed(self, error: Exception) -> None:
        with self._lock:
            if self.since is not None:
                return
            self.since = time.monotonic()
        log.warning("Redis unreachable (%s); waiting for it", error or type(error).__name__)

    def answered(self) -> None:
        with self._lock:
            since, self.since = self.since, None
        if since is not None:
            log.warning("Redis reachable again after %.1f s", time.monotonic() - since)


OUTAGE = _Outage()


class PatientRetry(Retry):
    """redis-py's ``Retry`` that also tells :data:`OUTAGE` what it sees."""

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        failures = 0

        def noting(error: Exception, *count: int) -> Any:
            nonlocal failures
            failures += 1
            OUTAGE.failed(error)
            return fail(error, *count)

        result = super().call_with_retry(
            do, noting, is_retryable=is_retryable, with_failure_count=with_failure_count
        )
        if failures or OUTAGE.since is not None:
            OUTAGE.answered()
        return result


def patient_options() -> dict[str, Any]:
    """``Redis`` keyword arguments for a worker-side client (see the module's docstring)."""
    backoff = ExponentialBackoff(
        cap=defaults.WORKER_REDIS_BACKOFF_CAP, base=defaults.WORKER_REDIS_BACKOFF_BASE
    )
    return {
        "retry": PatientRetry(backoff, defaults.WORKER_REDIS_RETRIES),
        "retry_on_error": [ConnectionError, TimeoutError],
    }

"""Jobs for the pool's own tests, run by real worker processes (``PYTHONPATH`` is the repo).

Each counts its runs in a Redis hash through the worker's own connection, so a test sees how
often every job ran, whatever happened to Redis meanwhile.
"""

from __future__ import annotations

from typing import Any

from rq import get_current_job


def _connection() -> Any:
    job = get_current_job()
    assert job is not None, "run by a worker"
    return job.connection


def tick(counts: str, name: str) -> int:
    """Count one run of ``name``."""
    runs: int = _connection().hincrby(counts, name, 1)
    return runs


def flaky(counts: str, name: str, failures: int) -> int:
    """Fail the first ``failures`` runs (RQ retries them through its scheduler), then count."""
    runs = tick(counts, name)
    if runs <= failures:
        raise RuntimeError(f"{name}: planned failure {runs} of {failures}")
    return runs


def vanish(counts: str, name: str) -> int:
    """Count one run, then delete this job's own record, as a concurrent run of the same job
    id that finished first (``result_ttl=0``) does."""
    runs = tick(counts, name)
    job = get_current_job()
    assert job is not None
    job.connection.delete(job.key)
    return runs

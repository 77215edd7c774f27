"""How long to wait before trying a refused start again: exponential, capped, jittered."""

from __future__ import annotations

import random

from telephony.errors import DailyAPIError, DailyError


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """``base * 2**(attempt-1)`` capped, with "equal jitter": half fixed, half random, so
    retries spread out yet never come back sooner than half the nominal delay."""
    nominal = min(cap, base * 2.0 ** min(max(attempt - 1, 0), 64))  # 2**1024 would overflow
    jitter: float = (rng or random).uniform(0, nominal / 2)
    return nominal / 2 + jitter


def retry_delay(error: DailyError, attempt: int, base: float, cap: float) -> float:
    """The backoff, or Daily's own delay when its answer carried one (whichever is longer):
    ``Retry-After`` belongs to 503 as much as to 429 (RFC 9110)."""
    delay = backoff(attempt, base, cap)
    if isinstance(error, DailyAPIError) and error.retry_after:
        delay = max(delay, error.retry_after)
    return delay

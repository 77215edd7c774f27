"""How long to wait before trying a refused start again: exponential, capped, jittered."""

from __future__ import annotations

import random

from telephony.errors import DailyError, RateLimitedError


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """``base * 2**(attempt-1)`` capped, with "equal jitter": half fixed, half random, so
    retries spread out yet never come back sooner than half the nominal delay."""
    nominal = min(cap, base * 2.0 ** max(attempt - 1, 0))
    jitter: float = (rng or random).uniform(0, nominal / 2)
    return nominal / 2 + jitter


def retry_delay(error: DailyError, attempt: int, base: float, cap: float) -> float:
    """The backoff, or Daily's own delay when a 429 carried one (whichever is longer)."""
    delay = backoff(attempt, base, cap)
    if isinstance(error, RateLimitedError) and error.retry_after:
        delay = max(delay, error.retry_after)
    return delay

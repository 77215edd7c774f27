"""Backoff for refused starts: exponential, capped, jittered, and Daily's own delay honoured."""

from __future__ import annotations

import random

import pytest

from telephony.errors import (
    DialoutInProgressError,
    RateLimitedError,
    ServerError,
    TemporarilyNotAvailableError,
)
from workers.retry import backoff, retry_delay

BASE, CAP = 0.5, 8.0
SAMPLES = 400


def nominal(attempt: int) -> float:
    return min(CAP, BASE * 2.0 ** (attempt - 1))


@pytest.mark.parametrize("attempt", range(1, 10))
def test_backoff_stays_within_half_to_full_nominal(attempt: int) -> None:
    rng = random.Random(attempt)
    delays = [backoff(attempt, BASE, CAP, rng) for _ in range(SAMPLES)]
    expected = nominal(attempt)
    assert all(expected / 2 <= d <= expected for d in delays)
    # The jitter really spreads retries over the whole upper half.
    assert min(delays) < expected * 0.55 and max(delays) > expected * 0.95


def test_backoff_doubles_until_the_cap() -> None:
    # The same random draw for every attempt: the delays keep the nominal delays' shape.
    delays = [backoff(a, BASE, CAP, random.Random(7)) for a in range(1, 9)]
    nominals = (0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0)
    ratios = [d / n for d, n in zip(delays, nominals, strict=True)]
    assert max(ratios) - min(ratios) < 1e-9


def test_backoff_of_attempt_zero_is_the_first_attempt() -> None:
    assert backoff(0, BASE, CAP, random.Random(1)) == backoff(1, BASE, CAP, random.Random(1))


def test_a_huge_attempt_number_is_capped_not_an_overflow() -> None:
    assert CAP / 2 <= backoff(10_000, BASE, CAP) <= CAP


@pytest.mark.parametrize(
    "error",
    [
        TemporarilyNotAvailableError(400, "invalid-request-error", "TEMPORARILY_NOT_AVAILABLE"),
        ServerError(500, "server-error", "internal error"),
        DialoutInProgressError(400, "invalid-request-error", "DIALOUT_IN_PROGRESS"),
        RateLimitedError(429, "rate-limit-error", "slow down"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_retry_delay_without_retry_after_is_the_backoff(error: ServerError) -> None:
    for attempt in (1, 3, 6):
        assert nominal(attempt) / 2 <= retry_delay(error, attempt, BASE, CAP) <= nominal(attempt)


def test_retry_after_of_a_429_is_honoured_when_longer() -> None:
    error = RateLimitedError(429, "rate-limit-error", "slow down", retry_after=30.0)
    assert retry_delay(error, 1, BASE, CAP) == 30.0  # beyond our cap: Daily knows best


def test_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    error = RateLimitedError(429, "rate-limit-error", "slow down", retry_after=0.01)
    assert nominal(5) / 2 <= retry_delay(error, 5, BASE, CAP) <= nominal(5)


def test_retry_after_of_a_503_is_honoured_too() -> None:
    """RFC 9110 gives ``Retry-After`` to 503 as well: Daily scaling up may say how long."""
    error = TemporarilyNotAvailableError(
        503, "server-error", "TEMPORARILY_NOT_AVAILABLE", retry_after=12.0
    )
    assert retry_delay(error, 2, BASE, CAP) == 12.0

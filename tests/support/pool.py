"""The environment of a ``telephony worker`` pool started by a test."""

from __future__ import annotations

from conftest import DAILY_API_KEY


def pool_env(redis_url: str, key_prefix: str, queue_name: str, **extra: str) -> dict[str, str]:
    """Redis, a Daily key, the test's own key prefix and queue, and ``extra`` variables."""
    return {
        "REDIS_URL": redis_url,
        "DAILY_API_KEY": DAILY_API_KEY,
        "TELEPHONY_KEY_PREFIX": key_prefix,
        "TELEPHONY_QUEUE": queue_name,
        **extra,
    }

"""Settings from the environment: defaults, rules, and secrets that never show."""

from __future__ import annotations

import pytest

from telephony import defaults
from telephony.config import ConfigError, RateLimit, Secret, Settings


def test_defaults_come_from_one_place() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url is None
    assert settings.daily_api_url == defaults.DAILY_API_URL
    assert settings.dialout_limit == RateLimit(5, 5.0)
    assert settings.api_tokens == () and not settings.webhook_secret


def test_tokens_are_comma_separated_for_rotation() -> None:
    settings = Settings.from_env({"TELEPHONY_API_TOKEN": " old , new ,, "})
    assert [token.reveal() for token in settings.api_tokens] == ["old", "new"]


@pytest.mark.parametrize(
    ("text", "limit"),
    [("5/5s", RateLimit(5, 5.0)), ("1/1", RateLimit(1, 1.0)), (" 10 / 2.5s ", RateLimit(10, 2.5))],
)
def test_rate_limits_parse(text: str, limit: RateLimit) -> None:
    assert RateLimit.parse(text) == limit


@pytest.mark.parametrize("text", ["", "5", "0/5s", "5/0s", "five/5s", "5/-1s", "5/5m"])
def test_bad_rate_limits_name_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match="TELEPHONY_DIALOUT_LIMIT"):
        Settings.from_env({"TELEPHONY_DIALOUT_LIMIT": text or "x"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TELEPHONY_DEDUPE_TTL", "0"),  # SET EX 0 is an error: every webhook would fail
        ("TELEPHONY_CALL_RETENTION", "0"),
        ("TELEPHONY_FEED_MAXLEN", "0"),
        ("TELEPHONY_RETRY_MAX_ATTEMPTS", "0"),
        ("TELEPHONY_DAILY_READ_TIMEOUT", "0"),
        ("TELEPHONY_RETRY_BASE", "-1"),
        ("TELEPHONY_RETRY_BASE", "nan"),
        ("TELEPHONY_MAX_LIVE_CALLS", "1.5"),
        ("TELEPHONY_AMBIGUOUS_GRACE", "soon"),
    ],
)
def test_unusable_numbers_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_secrets_never_show() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://:hunter2@db.internal:6379/0",
            "DAILY_API_KEY": "daily-key-123",
            "DAILY_WEBHOOK_SECRET": "c2VjcmV0",
            "TELEPHONY_API_TOKEN": "token-abc",
        }
    )
    shown = repr(settings) + str(settings)
    for secret in ("hunter2", "daily-key-123", "c2VjcmV0", "token-abc"):
        assert secret not in shown
    assert settings.redis_url == "redis://:hunter2@db.internal:6379/0"


def test_secret_compares_in_constant_time_and_by_value() -> None:
    secret = Secret("abc")
    assert secret.matches("abc") and not secret.matches("abd")
    assert secret == Secret("abc") and secret != Secret("abd")
    assert repr(secret) == "Secret('**********')" and not Secret("")

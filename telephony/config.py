"""Settings read once from the environment; defaults live in :mod:`telephony.defaults`.

Secrets are wrapped in :class:`Secret` so that a ``repr`` of the settings, a log line or a
traceback never shows them.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from telephony import defaults


class ConfigError(ValueError):
    """A setting in the environment cannot be used; the message names the variable."""


class Secret:
    """A string that hides itself from ``repr``/``str`` and compares in constant time."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def matches(self, candidate: str) -> bool:
        return hmac.compare_digest(self._value.encode(), candidate.encode())

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.matches(other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` events in any window of ``window`` seconds."""

    count: int
    window: float

    @classmethod
    def parse(cls, text: str, name: str = "TELEPHONY_DIALOUT_LIMIT") -> RateLimit:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*s?\s*", text)
        if not match or int(match[1]) < 1 or float(match[2]) <= 0:
            raise ConfigError(f"{name} must look like N/Ws (for example 5/5s), got {text!r}")
        return cls(int(match[1]), float(match[2]))

    def __str__(self) -> str:
        return f"{self.count}/{self.window:g}s"


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum or value != value:  # value != value: NaN
        raise ConfigError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment (see the README's table)."""

    #: Not in the repr: a Redis URL may carry a password.
    redis_url: str | None = field(default=None, repr=False)
    daily_api_url: str = defaults.DAILY_API_URL
    daily_api_key: Secret = field(default_factory=lambda: Secret(""))
    webhook_secret: Secret = field(default_factory=lambda: Secret(""))
    api_tokens: tuple[Secret, ...] = ()
    dialout_limit: RateLimit = field(
        default_factory=lambda: RateLimit.parse(defaults.DIALOUT_LIMIT)
    )
    key_prefix: str = defaults.KEY_PREFIX
    call_retention: int = defaults.CALL_RETENTION
    feed_maxlen: int = defaults.FEED_MAXLEN
    dedupe_ttl: int = defaults.DEDUPE_TTL
    max_live_calls: int = defaults.MAX_LIVE_CALLS
    room_leg_limit: int = defaults.ROOM_LEG_LIMIT
    retry_max_attempts: int = defaults.RETRY_MAX_ATTEMPTS
    retry_base: float = defaults.RETRY_BASE
    retry_cap: float = defaults.RETRY_CAP
    ambiguous_grace: float = defaults.AMBIGUOUS_GRACE
    daily_read_timeout: float = defaults.DAILY_READ_TIMEOUT
    queue_name: str = defaults.QUEUE_NAME
    sweep_interval: float = defaults.SWEEP_INTERVAL
    spool_dir: str = defaults.SPOOL_DIR
    webhook_check_interval: float = defaults.WEBHOOK_CHECK_INTERVAL
    reconcile_after: float = defaults.RECONCILE_AFTER
    presence_lag: float = defaults.PRESENCE_LAG
    dialin_max_duration: float = defaults.MAX_DURATION_MAX

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        tokens = tuple(
            Secret(token.strip())
            for token in env.get("TELEPHONY_API_TOKEN", "").split(",")
            if token.strip()
        )
        return cls(
            redis_url=env.get("REDIS_URL") or None,
            daily_api_url=(env.get("DAILY_API_URL") or defaults.DAILY_API_URL).rstrip("/"),
            daily_api_key=Secret(env.get("DAILY_API_KEY", "")),
            webhook_secret=Secret(env.get("DAILY_WEBHOOK_SECRET", "")),
            api_tokens=tokens,
            dialout_limit=RateLimit.parse(
                env.get("TELEPHONY_DIALOUT_LIMIT") or defaults.DIALOUT_LIMIT
            ),
            key_prefix=env.get("TELEPHONY_KEY_PREFIX") or defaults.KEY_PREFIX,
            call_retention=_int(
                env, "TELEPHONY_CALL_RETENTION", defaults.CALL_RETENTION, minimum=1
            ),
            feed_maxlen=_int(env, "TELEPHONY_FEED_MAXLEN", defaults.FEED_MAXLEN, minimum=1),
            dedupe_ttl=_int(env, "TELEPHONY_DEDUPE_TTL", defaults.DEDUPE_TTL, minimum=1),
            max_live_calls=_int(env, "TELEPHONY_MAX_LIVE_CALLS", defaults.MAX_LIVE_CALLS),
            room_leg_limit=_int(env, "TELEPHONY_ROOM_LEG_LIMIT", defaults.ROOM_LEG_LIMIT),
            retry_max_attempts=_int(
                env, "TELEPHONY_RETRY_MAX_ATTEMPTS", defaults.RETRY_MAX_ATTEMPTS, minimum=1
            ),
            retry_base=_float(env, "TELEPHONY_RETRY_BASE", defaults.RETRY_BASE),
            retry_cap=_float(env, "TELEPHONY_RETRY_CAP", defaults.RETRY_CAP),
            ambiguous_grace=_float(env, "TELEPHONY_AMBIGUOUS_GRACE", defaults.AMBIGUOUS_GRACE),
            daily_read_timeout=_float(
                env, "TELEPHONY_DAILY_READ_TIMEOUT", defaults.DAILY_READ_TIMEOUT, minimum=0.1
            ),
            queue_name=env.get("TELEPHONY_QUEUE") or defaults.QUEUE_NAME,
            sweep_interval=_float(
                env, "TELEPHONY_SWEEP_INTERVAL", defaults.SWEEP_INTERVAL, minimum=0.1
            ),
            spool_dir=env.get("TELEPHONY_SPOOL_DIR") or defaults.SPOOL_DIR,
            webhook_check_interval=_float(
                env,
                "TELEPHONY_WEBHOOK_CHECK_INTERVAL",
                defaults.WEBHOOK_CHECK_INTERVAL,
                minimum=0.1,
            ),
            reconcile_after=_float(
                env, "TELEPHONY_RECONCILE_AFTER", defaults.RECONCILE_AFTER, minimum=0.1
            ),
            presence_lag=_float(env, "TELEPHONY_PRESENCE_LAG", defaults.PRESENCE_LAG),
            dialin_max_duration=_float(
                env, "TELEPHONY_DIALIN_MAX_DURATION", defaults.MAX_DURATION_MAX, minimum=0.1
            ),
        )

"""Cluster-wide pacing of dial-out starts: never more than N in ANY window of W seconds.

A sliding log in Redis (a sorted set of start times, Redis' own clock, so machines with skewed
clocks still agree). A token bucket of burst 5 refilling at 1/s would let 9 starts through in
5 s; the log cannot. ``W`` is widened by a small margin so network jitter between us and Daily
cannot fit six of our starts into one of Daily's windows.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import redis

from telephony import defaults
from telephony.config import RateLimit

#: KEYS[1] log; ARGV: count, window (s), member. Returns {granted 0/1, wait seconds as text}.
_ACQUIRE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local count, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - window)
local used = redis.call('ZCARD', KEYS[1])
if used < count then
  redis.call('ZADD', KEYS[1], t, ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
  return {1, '0'}
end
local oldest = redis.call('ZRANGE', KEYS[1], used - count, used - count, 'WITHSCORES')
return {0, tostring(tonumber(oldest[2]) + window - t)}
"""


class SlidingWindowLimiter:
    def __init__(
        self,
        client: redis.Redis,
        key: str,
        limit: RateLimit,
        margin: float = defaults.DIALOUT_LIMIT_MARGIN,
    ) -> None:
        self.key = key
        self.limit = limit
        self.window = limit.window + margin
        self._script: Any = client.register_script(_ACQUIRE)

    def acquire(self) -> float:
        """Take a slot now and return 0, or take nothing and return the seconds to wait."""
        granted, wait = self._script(
            keys=[self.key], args=[self.limit.count, self.window, uuid.uuid4().hex]
        )
        return 0.0 if int(granted) else max(float(wait), 0.001)


#: KEYS[1] live set; ARGV: cap, call id. 1: took a slot now, 2: the call held one, 0: full.
_TAKE_LIVE = """
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 2 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], now[1], ARGV[2])
return 1
"""


_TAKEN: dict[int, Literal["taken", "held", ""]] = {0: "", 1: "taken", 2: "held"}


class LiveCalls:
    """A cap on calls between ``dialing`` and their end, across the cluster (0 = no cap).

    A slot is taken by the start job and given back by the store when the call ends (the Lua
    apply removes it), or by the job when a start is refused and the call goes back to queued.
    """

    def __init__(self, client: redis.Redis, key: str, cap: int) -> None:
        self.client: Any = client
        self.key = key
        self.cap = cap
        self._take: Any = client.register_script(_TAKE_LIVE)

    def take(self, call_id: str) -> Literal["taken", "held", ""]:
        """``taken`` now, already ``held`` by the call (another run of its start job took it:
        not this run's to give back), or ``""`` when the cap is reached. Without a cap there
        is nothing to count: ``taken`` with no Redis call (and giving back is a no-op)."""
        if self.cap <= 0:
            return "taken"
        return _TAKEN[int(self._take(keys=[self.key], args=[self.cap, call_id]))]

    def give_back(self, call_id: str) -> None:
        if self.cap > 0:
            self.client.zrem(self.key, call_id)

"""Cluster-wide pacing of dial-out starts: never more than N in ANY window of W seconds;
and the slots a live call holds (its room's legs, the live-call cap).

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
from telephony.keys import Keys

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


#: KEYS[1] the room's legs, KEYS[2] live set; ARGV: room's leg limit, live cap (0 = none),
#: call id, call key prefix. Returns 1 took both now, 2 the call held them, 0 room full,
#: -1 live cap reached.
_TAKE = """
local limit, cap, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
if (limit > 0 and redis.call('ZSCORE', KEYS[1], id))
    or (cap > 0 and redis.call('ZSCORE', KEYS[2], id)) then
  return 2
end
if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then
  -- Full: drop legs whose call has ended or expired (a slot can only leak if a process died
  -- between taking it and giving it back; at most ``limit`` reads, and only when full).
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local state = redis.call('HGET', ARGV[4] .. member, 'state')
    if not state or state == 'stopped' or state == 'error' then
      redis.call('ZREM', KEYS[1], member)
    end
  end
  if redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
end
if cap > 0 and redis.call('ZCARD', KEYS[2]) >= cap then return -1 end
local now = redis.call('TIME')
if limit > 0 then redis.call('ZADD', KEYS[1], now[1], id) end
if cap > 0 then redis.call('ZADD', KEYS[2], now[1], id) end
return 1
"""

Taken = Literal["taken", "held", "room-legs", "live-cap"]
_TAKEN: dict[int, Taken] = {1: "taken", 2: "held", 0: "room-legs", -1: "live-cap"}


class Slots:
    """What a call holds from ``dialing`` to its end, across the cluster: one of its room's
    SIP/PSTN legs (Daily allows ``room_leg_limit`` at once) and a live-call slot (``cap``).
    0 means no limit for either.

    Both are taken together by the start job, in one script, and given back together: by the
    store when the call ends (``apply.lua`` removes them), or by the job when a start is
    refused or waits and the call stays queued.
    """

    def __init__(self, client: redis.Redis, keys: Keys, room_leg_limit: int, cap: int) -> None:
        self.client: Any = client
        self.keys = keys
        self.room_leg_limit = room_leg_limit
        self.cap = cap
        self._take: Any = client.register_script(_TAKE)

    def take(self, call_id: str, room: str) -> Taken:
        """``taken`` now, already ``held`` by the call (another run of its start job took
        them: not this run's to give back), or what is full: ``room-legs`` or ``live-cap``.
        Without any limit there is nothing to count: ``taken`` with no Redis call."""
        if self.room_leg_limit <= 0 and self.cap <= 0:
            return "taken"
        keys = [self.keys.room_legs(room), self.keys.live]
        args = [self.room_leg_limit, self.cap, call_id, self.keys.call("")]
        return _TAKEN[int(self._take(keys=keys, args=args))]

    def give_back(self, call_id: str, room: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        if self.room_leg_limit > 0:
            pipe.zrem(self.keys.room_legs(room), call_id)
        if self.cap > 0:
            pipe.zrem(self.keys.live, call_id)
        pipe.execute()  # an empty pipeline sends nothing

"""Cluster-wide pacing and the live-call cap, against a real Redis, from several processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import redis

from telephony.config import RateLimit
from telephony.keys import Keys
from telephony.limiter import SlidingWindowLimiter, Slots

#: One process hammering ``acquire``: says ``ready``, waits for a line on stdin, then for
#: ``argv[5]`` seconds of Redis time records each grant as (Redis TIME before, after).
HAMMER = """
import json, sys, time, redis
from telephony.config import RateLimit
from telephony.limiter import SlidingWindowLimiter
url, key, count, window, duration = sys.argv[1:6]
client = redis.Redis.from_url(url)
limiter = SlidingWindowLimiter(client, key, RateLimit(int(count), float(window)))
def now():
    seconds, micros = client.time()
    return seconds + micros / 1e6
print("ready", flush=True)
sys.stdin.readline()
stop = now() + float(duration)
grants = []
while True:
    before = now()
    if before >= stop:
        break
    wait = limiter.acquire()
    if wait == 0:
        grants.append((before, now()))
    else:
        time.sleep(min(wait, 0.002))
print(json.dumps(grants), flush=True)
"""
PROCESSES = 6


def proven_violations(grants: list[tuple[float, float]], count: int, window: float) -> list[Any]:
    """Sets of ``count + 1`` grants that certainly fell within one ``window``: each grant's
    true time lies between its before/after stamps, so if the latest "after" minus the
    earliest "before" of the set is under ``window``, all of them were inside it."""
    ordered = sorted(grants)
    found = []
    for i, (first_before, _) in enumerate(ordered):
        inside = [g for g in ordered[i:] if g[1] - first_before < window]
        if len(inside) > count:
            found.append(inside)
    return found


def test_many_processes_never_exceed_the_limit(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    limit = RateLimit(4, 0.5)
    key = f"{key_prefix}:limit:dialout"
    window = SlidingWindowLimiter(redis_client, key, limit).window  # W plus the margin
    duration = 1.5
    args = [redis_url, key, str(limit.count), str(limit.window), str(duration)]
    hammers = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for hammer in hammers:
            assert hammer.stdout is not None and hammer.stdout.readline().strip() == "ready"
        for hammer in hammers:  # go, as close together as possible
            assert hammer.stdin is not None
            hammer.stdin.write("go\n")
            hammer.stdin.flush()
        outputs = [hammer.communicate(timeout=duration + 10)[0] for hammer in hammers]
    finally:
        for hammer in hammers:
            hammer.kill()
            hammer.wait()
    per_process = [[tuple(g) for g in json.loads(out)] for out in outputs]
    grants: list[tuple[float, float]] = [g for grants in per_process for g in grants]
    assert proven_violations(grants, limit.count, window) == []
    # The limiter is not starving anyone either: close to count per window over the run...
    windows = duration / window
    assert limit.count * (windows - 1) <= len(grants) <= limit.count * (windows + 1)
    # ...and the slots went to several processes, not to one that got lucky.
    assert sum(1 for grants in per_process if grants) >= 3


def test_wait_says_when_a_slot_frees(redis_client: redis.Redis, key_prefix: str) -> None:
    """Bounds come from measured times, with slack for a loaded machine's sleeps."""
    limiter = SlidingWindowLimiter(redis_client, f"{key_prefix}:pace", RateLimit(2, 1.0), 0.0)
    first = time.monotonic()
    assert limiter.acquire() == 0.0
    time.sleep(0.4)
    assert limiter.acquire() == 0.0
    asked = time.monotonic()
    wait = limiter.acquire()
    # The oldest grant leaves the 1 s window about 1 s after ``first``.
    assert 1.0 - (time.monotonic() - first) - 0.05 <= wait <= 1.0 - (asked - first) + 0.05
    assert limiter.acquire() > 0  # asking again took nothing
    time.sleep(wait + 0.02)
    assert limiter.acquire() == 0.0
    assert limiter.acquire() > 0  # the second grant (0.4 s younger) is still inside the window


def test_live_calls_cap(redis_client: redis.Redis, key_prefix: str) -> None:
    live = Slots(redis_client, Keys(key_prefix), room_leg_limit=0, cap=2)
    assert [live.take(c, "r") for c in "abc"] == ["taken", "taken", "live-cap"]
    assert live.take("a", "r") == "held"  # another run of a's start: not its slot to give back
    live.give_back("a", "r")
    assert live.take("c", "r") == "taken"


def test_room_legs_per_room(redis_client: redis.Redis, key_prefix: str) -> None:
    """A room's legs are counted apart from other rooms', and taken with the live cap."""
    slots = Slots(redis_client, Keys(key_prefix), room_leg_limit=2, cap=3)
    for call_id in "abcde":  # live calls (a full room reclaims the legs of ended ones)
        redis_client.hset(Keys(key_prefix).call(call_id), "state", "dialing")
    assert [slots.take(c, "one") for c in "abc"] == ["taken", "taken", "room-legs"]
    assert slots.take("d", "two") == "taken"
    assert slots.take("e", "two") == "live-cap"  # room two has a leg free, the cluster not
    slots.give_back("a", "one")
    assert slots.take("e", "two") == "taken"
    assert slots.take("c", "one") == "live-cap"
    assert redis_client.zcard(Keys(key_prefix).room_legs("one")) == 1  # nothing half-taken


def test_room_legs_of_ended_calls_are_reclaimed(redis_client: redis.Redis, key_prefix: str) -> None:
    """A leg whose call ended (or expired) without giving it back does not block the room."""
    keys = Keys(key_prefix)
    slots = Slots(redis_client, keys, room_leg_limit=2, cap=0)
    for call_id, state in (("a", "answered"), ("b", "stopped"), ("c", "dialing")):
        redis_client.hset(keys.call(call_id), "state", state)
    assert [slots.take(c, "r") for c in "abx"] == ["taken", "taken", "taken"]  # x: no limit hit
    slots.give_back("x", "r")
    assert slots.take("c", "r") == "taken"  # b had ended without giving its leg back
    assert sorted(redis_client.zrange(keys.room_legs("r"), 0, -1)) == [b"a", b"c"]
    assert slots.take("d", "r") == "room-legs"  # a and c are live
    redis_client.delete(keys.call("a"))  # a's record expired
    assert slots.take("d", "r") == "taken"


def test_live_calls_without_a_cap_cost_nothing(redis_client: redis.Redis, key_prefix: str) -> None:
    live = Slots(redis_client, Keys(key_prefix), room_leg_limit=0, cap=0)
    assert all(live.take(f"call-{n}", "r") == "taken" for n in range(50))
    live.give_back("call-1", "r")
    assert redis_client.keys(f"{key_prefix}:*") == []  # no Redis command was needed

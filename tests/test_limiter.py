"""Cluster-wide pacing and the live-call cap, against a real Redis, from several processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import redis

from telephony.config import RateLimit
from telephony.limiter import LiveCalls, SlidingWindowLimiter

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
    live = LiveCalls(redis_client, f"{key_prefix}:live", cap=2)
    assert [live.take("a"), live.take("b"), live.take("c")] == ["taken", "taken", ""]
    assert live.take("a") == "held"  # another run of a's start: not its slot to give back
    live.give_back("a")
    assert live.take("c") == "taken"


def test_live_calls_without_a_cap_cost_nothing(redis_client: redis.Redis, key_prefix: str) -> None:
    live = LiveCalls(redis_client, f"{key_prefix}:live", cap=0)
    assert all(live.take(f"call-{n}") == "taken" for n in range(50))
    live.give_back("call-1")
    assert redis_client.exists(f"{key_prefix}:live") == 0  # no Redis command was needed

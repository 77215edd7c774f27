"""Daily's dial-out start limit as a sliding log: never more than N starts in ANY W seconds.

A fixed-window counter would let 2N starts through across a window boundary; the log keeps
the time of every accepted start inside the window, so the sandbox is as strict as the limit
the service must respect. Refused attempts are not logged: they do not count.

In memory, for one sandbox process: not :class:`telephony.limiter.SlidingWindowLimiter`, the
service's Redis-backed limiter shared by every worker.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from telephony.config import RateLimit


class LocalSlidingWindow:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._accepted: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float | None:
        """Count one start now if the window has room: its monotonic time, else ``None``."""
        with self._lock:
            now = time.monotonic()
            while self._accepted and now - self._accepted[0] >= self.limit.window:
                self._accepted.popleft()
            if len(self._accepted) >= self.limit.count:
                return None
            self._accepted.append(now)
            return now

    def reset(self) -> None:
        with self._lock:
            self._accepted.clear()

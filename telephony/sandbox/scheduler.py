"""One timer thread that runs every scheduled step of every simulated call.

A thread per timer would leave stragglers behind ``reset``/``stop``; a single heap ordered by
monotonic deadline can be cancelled as a whole and fires steps of one call in order.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Timer:
    """Handle of one scheduled callback; ``cancel`` is safe at any time, even after it ran."""

    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """Runs callbacks at monotonic deadlines on one daemon thread, in deadline order."""

    def __init__(self, name: str = "sandbox-scheduler") -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        with self._cond:
            heapq.heappush(self._heap, (timer.deadline, next(self._order), timer))
            self._cond.notify()
        return timer

    def clear(self) -> None:
        """Cancel everything still pending."""
        with self._cond:
            for _, _, timer in self._heap:
                timer.cancel()
            self._heap.clear()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self.clear()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)

    def _next_due(self) -> Timer | None:
        """Wait for the next due timer; ``None`` once stopped."""
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, _, timer = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                if not timer.cancelled:
                    return timer
            return None

    def _run(self) -> None:
        while (timer := self._next_due()) is not None:
            try:
                timer.callback()
            except Exception:  # one broken step must not stop every other call
                log.exception("sandbox: scheduled step failed")

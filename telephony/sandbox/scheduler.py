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


class Scheduler:
    """Runs callbacks at monotonic deadlines on one daemon thread, in deadline order.

    Nothing is cancelled one by one: a session ignores steps of an older generation, and
    :meth:`clear` forgets them all.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()  # ties run in scheduling order, never compare callbacks
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sandbox-scheduler", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        deadline = time.monotonic() + max(0.0, delay)
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._order), callback))
            self._cond.notify()

    def clear(self) -> None:
        """Forget everything still pending."""
        with self._cond:
            self._heap.clear()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self.clear()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)

    def _next_due(self) -> Callable[[], None] | None:
        """Wait for the next due callback; ``None`` once stopped."""
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, _, callback = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                return callback
            return None

    def _run(self) -> None:
        while (callback := self._next_due()) is not None:
            try:
                callback()
            except Exception:  # one broken step must not stop every other call
                log.exception("sandbox: scheduled step failed")

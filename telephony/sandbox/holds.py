"""Start requests the sandbox never answers (the ``hang`` outcome), held open on their socket.

A held request costs its own server thread and nothing else (the server is threaded). It is
released when the client gives up (its socket reads end-of-file), at its deadline, or when the
sandbox stops: one byte on a socketpair wakes every held request at once, so stopping never
waits out a deadline and no held thread outlives the sandbox.
"""

from __future__ import annotations

import select
import socket
import threading
import time

#: Why a held request ended, as ``/_sandbox/starts`` reports it (``released``).
CLIENT = "client"
TIMEOUT = "timeout"
STOPPED = "stopped"

#: Seconds :meth:`Holds.close` waits for held requests to leave before closing its socketpair
#: (each leaves as soon as it wakes; a straggler keeps the pair open rather than select on a
#: closed socket).
CLOSE_WAIT = 1.0

#: ``recv`` that never blocks where the platform has the flag (select said readable anyway).
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


class Holds:
    def __init__(self) -> None:
        self._wake_read, self._wake_write = socket.socketpair()
        self._cond = threading.Condition()
        self._held = 0
        self._closed = False

    def hold(self, sock: socket.socket, seconds: float) -> str:
        """Keep ``sock``'s request unanswered; why it ended: CLIENT, TIMEOUT or STOPPED."""
        with self._cond:
            if self._closed:
                return STOPPED
            self._held += 1
        try:
            return self._wait(sock, time.monotonic() + seconds)
        finally:
            with self._cond:
                self._held -= 1
                self._cond.notify_all()

    def held(self) -> int:
        """Requests held right now."""
        with self._cond:
            return self._held

    def close(self) -> None:
        """Release every held request and wait (:data:`CLOSE_WAIT` at most) until all left."""
        with self._cond:
            first = not self._closed
            self._closed = True
        if first:
            self._wake_write.send(b"x")  # never read: stays readable for every later select
        with self._cond:
            done = self._cond.wait_for(lambda: self._held == 0, CLOSE_WAIT)
        if done and first:
            self._wake_read.close()
            self._wake_write.close()

    def _wait(self, sock: socket.socket, deadline: float) -> str:
        while (left := deadline - time.monotonic()) > 0:
            try:
                readable, _, _ = select.select([sock, self._wake_read], [], [], left)
            except (OSError, ValueError):  # the client's socket is already gone
                return CLIENT
            if self._wake_read in readable:
                return STOPPED
            if readable and _client_left(sock):
                return CLIENT
        return TIMEOUT


def _client_left(sock: socket.socket) -> bool:
    """Whether a readable ``sock`` was closed by the client.

    Bytes sent after the start (a pipelined request) are read and dropped: this request is
    never answered, and leaving them would make every later select return at once.
    """
    try:
        return not sock.recv(4096, _DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True

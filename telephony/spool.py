"""A durable journal of verified webhooks that could not be committed: Redis was away.

Daily trips its circuit breaker after a few failed deliveries and then stops sending for good,
so the receiver answers every authentic webhook 200, Redis or not. One that cannot be committed
(Redis unreachable) is appended to this process's journal in ``TELEPHONY_SPOOL_DIR`` and
fsynced before the 200; a webhook answered 200 is lost only with the disk.

- **In arrival order.** While the journal holds anything, later webhooks are journalled too,
  behind it; a background thread applies the journal from the front, through the normal apply
  path, as soon as Redis answers, and empties the file when it has caught up.
- **Owned while alive.** Each process journals into a file of its own, locked (``flock``) for
  its lifetime. A process that starts adopts every journal whose lock is free (its owner died,
  even by SIGKILL): it appends those entries to its own journal, fsyncs, and deletes them. Two
  processes never apply one journal. An entry applied just before a crash is applied again by
  the adopter and de-duplicated by its event id.
- **Bounded.** Past ``SPOOL_MAX_BYTES`` a webhook is refused (503, counted): Daily retries it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import redis

from telephony import defaults

log = logging.getLogger(__name__)

_SUFFIX = ".journal"


class SpoolFull(Exception):
    """The journal reached its bound; the webhook was not accepted."""


class Spool:
    """This process's journal: append, then apply in order once Redis answers.

    ``apply`` commits one entry (a webhook envelope) and raises ``redis.ConnectionError`` or
    ``redis.TimeoutError`` while Redis is away.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        apply: Callable[[dict[str, Any]], Any],
        max_bytes: int = defaults.SPOOL_MAX_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.apply = apply
        self.max_bytes = max_bytes
        self.refused = 0  # webhooks refused because the journal was full
        self._lock = threading.Lock()
        self._pending: deque[tuple[float, dict[str, Any]]] = deque()  # (wall time, entry)
        self._bytes = 0
        self._file: IO[bytes] | None = None
        self._pid = 0
        self._wake = threading.Event()
        self._drainer: threading.Thread | None = None

    # --- writing ---------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether entries wait: a new webhook must queue behind them, not overtake them."""
        return bool(self._pending)

    def append(self, entry: dict[str, Any]) -> None:
        """Journal ``entry`` durably (fsync), then let the drainer apply it; ``SpoolFull``."""
        line = _line(entry)
        with self._lock:
            if self._bytes + len(line) > self.max_bytes:
                self.refused += 1
                raise SpoolFull(f"webhook spool full ({self._bytes} bytes)")
            self._write(line, entry)
        self._start_drainer()

    def _write(self, line: bytes, entry: dict[str, Any]) -> None:
        """Append one line to the journal and fsync it (the caller holds the lock)."""
        journal = self._journal()
        journal.write(line)
        journal.flush()
        os.fsync(journal.fileno())
        self._bytes += len(line)
        self._pending.append((time.time(), entry))

    def _journal(self) -> IO[bytes]:
        """This process's journal, created and locked on first use (after any fork)."""
        if self._file is None or self._pid != os.getpid():
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{_SUFFIX}"
            journal = open(self.directory / name, "ab")  # noqa: SIM115 - held for the process
            fcntl.flock(journal.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._file, self._pid = journal, os.getpid()
            self._bytes = 0
        return self._file

    # --- what /metrics and /readyz show ----------------------------------------------------

    def stats(self) -> dict[str, float]:
        """Entries waiting, their bytes, and the age of the oldest (seconds; 0 when empty)."""
        with self._lock:
            oldest = self._pending[0][0] if self._pending else None
            return {
                "entries": len(self._pending),
                "bytes": self._bytes if self._pending else 0,
                "oldest_age": 0.0 if oldest is None else max(0.0, time.time() - oldest),
                "refused": self.refused,
            }

    # --- applying --------------------------------------------------------------------------

    def adopt(self) -> int:
        """Take over every journal whose owner died: its entries join this process's journal,
        in their order, behind anything already there; how many entries were adopted."""
        if not self.directory.is_dir():
            return 0
        adopted = 0
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            if self._file is not None and path.name == Path(self._file.name).name:
                continue
            with contextlib.suppress(FileNotFoundError), open(path, "rb") as orphan:
                try:
                    fcntl.flock(orphan.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its owner is alive (and applies it itself)
                entries = _read(orphan)
                for entry in entries:
                    with self._lock:  # with no bound: what was accepted is kept
                        self._write(_line(entry), entry)
                path.unlink()  # only once its entries are safe in our own journal
                adopted += len(entries)
                if entries:
                    log.warning("adopted %d spooled webhooks from %s", len(entries), path.name)
        if adopted:
            self._start_drainer()
        return adopted

    def _start_drainer(self) -> None:
        with self._lock:
            if self._drainer is None or not self._drainer.is_alive():
                self._drainer = threading.Thread(target=self._drain, name="spool", daemon=True)
                self._drainer.start()
        self._wake.set()

    def _drain(self) -> None:
        """Apply the journal from the front until it is empty; wait while Redis is away."""
        pause = defaults.SPOOL_RETRY_MIN
        while True:
            with self._lock:
                if not self._pending:
                    if self._file is not None:  # caught up: the journal starts afresh
                        self._file.truncate(0)
                        os.fsync(self._file.fileno())
                    self._bytes = 0
                    self._drainer = None
                    return
                _, entry = self._pending[0]
            try:
                self.apply(entry)
            except (redis.ConnectionError, redis.TimeoutError):
                self._wake.wait(pause)
                self._wake.clear()
                pause = min(pause * 2, defaults.SPOOL_RETRY_MAX)
                continue
            except Exception:  # an entry that can never be applied must not block the rest
                log.exception("a spooled webhook could not be applied; it is dropped")
            pause = defaults.SPOOL_RETRY_MIN
            with self._lock:
                self._pending.popleft()


def _line(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, separators=(",", ":")).encode() + b"\n"


def _read(journal: IO[bytes]) -> list[dict[str, Any]]:
    """A journal's entries; a torn last line (the owner died mid-write, before its fsync and
    so before its 200) is skipped."""
    entries = []
    for line in journal.read().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                entries.append(entry)
    return entries

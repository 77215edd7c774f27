"""Daily's ``GET /logs/api``: the API requests it served and the webhook deliveries it tried.

As ``../shared/daily-api.md`` ("Read-back") describes: ``source=api`` entries hold the method,
URL, status and the request and response bodies as JSON strings; ``source=webhook`` entries
hold the delivered body and the answer. Only what was attempted is logged: a message dropped
while the webhook was ``FAILED`` was never sent, so it is not here. Newest first; ``url``
filters by substring, ``limit`` bounds a page, ``starting_after`` (an entry id) pages on. The
answer is Daily's ``{"total_count", "data"}`` wrapper.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from telephony.sandbox import errors
from telephony.store import now_iso

SOURCES = ("api", "webhook")
LIMIT_DEFAULT = 20
LIMIT_MAX = 1000
#: Entries kept per source: the sandbox is not a log store.
KEEP = 100_000


class ApiLog:
    def __init__(self) -> None:
        self._entries: dict[str, list[dict[str, Any]]] = {source: [] for source in SOURCES}
        self._lock = threading.Lock()

    def add(self, source: str, **fields: Any) -> None:
        entry = {"id": str(uuid.uuid4()), "createdAt": now_iso(), "source": source, **fields}
        with self._lock:
            entries = self._entries[source]
            entries.append(entry)
            del entries[:-KEEP]

    def page(self, args: dict[str, str]) -> dict[str, Any]:
        """One page of entries, newest first, for the query ``args`` (400 when invalid)."""
        source = args.get("source", "api")
        if source not in SOURCES:
            raise errors.invalid("source: must be 'api' or 'webhook'")
        raw_limit = args.get("limit", str(LIMIT_DEFAULT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= LIMIT_MAX:
            raise errors.invalid(f"limit: must be an integer from 1 to {LIMIT_MAX}")
        with self._lock:
            entries = list(reversed(self._entries[source]))
        if "url" in args:
            entries = [e for e in entries if args["url"] in e["url"]]
        after = args.get("starting_after")
        if after:
            ids = [e["id"] for e in entries]
            entries = entries[ids.index(after) + 1 :] if after in ids else []
        return {"total_count": len(entries), "data": entries[: int(raw_limit)]}

    def clear(self) -> None:
        with self._lock:
            for entries in self._entries.values():
                entries.clear()

"""Catch-up from Daily's webhook log: what Daily tried to deliver is applied, once.

While deliveries fail (a web tier down, a breaker tripped) Daily's log still holds what it
attempted (``GET /logs/api?source=webhook``: the body it sent). :func:`replay` reads the entries
newer than the last one it saw (``logCursor`` in ``{p}:webhook``), oldest first, and applies
each event through the normal apply path; de-duplication by event id makes that safe for the
ones that did arrive. Entries applied this way are recorded with source ``log``. A message
dropped while the webhook was ``FAILED`` was never attempted, so it is not in the log: room
presence has to tell about those.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from typing import Any

from telephony import defaults
from telephony.daily import DailyClient
from telephony.inbound import to_change
from telephony.store import CallStore

log = logging.getLogger(__name__)


def replay(store: CallStore, daily: DailyClient) -> dict[str, int]:
    """Apply every webhook Daily logged since the last replay; counts by outcome."""
    cursor = store.redis.hget(store.keys.webhook, "logCursor")
    seen = cursor.decode() if cursor else None
    entries: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(defaults.RECONCILE_LOG_PAGES):  # newest first, back to what we saw last
        page = daily.webhook_log(defaults.RECONCILE_LOG_PAGE, starting_after=after)
        ids = [entry.get("id") for entry in page]
        if seen in ids:
            entries += page[: ids.index(seen)]
            break
        entries += page
        if len(page) < defaults.RECONCILE_LOG_PAGE:
            break
        after = str(ids[-1])
    outcomes: Counter[str] = Counter()
    for entry in reversed(entries):  # oldest first
        change = _change(entry)
        if change is not None:
            outcomes[store.apply(change).status] += 1
    if entries and entries[0].get("id"):
        store.redis.hset(store.keys.webhook, "logCursor", str(entries[0]["id"]))
    if outcomes.get("applied"):
        log.warning("replayed from Daily's webhook log: %s", dict(outcomes))
    return dict(outcomes)


def _change(entry: dict[str, Any]) -> Any:
    """The change a logged delivery asks for (recorded as learned from the log), or None."""
    raw = entry.get("request")
    try:
        envelope = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, RecursionError):
        return None
    if not isinstance(envelope, dict) or envelope.get("type") is None:
        return None  # a test request, or not a webhook body
    change = to_change(envelope)
    return None if change is None else dataclasses.replace(change, source="log")

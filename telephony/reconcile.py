"""Catch-up from Daily's webhook log: what Daily tried to deliver is applied, once.

While deliveries fail (a web tier down, a breaker tripped) Daily's log still holds what it
attempted (``GET /logs/api?source=webhook``: the body it sent). :func:`replay` reads the entries
newer than the last one it saw (``logCursor`` in ``{p}:webhook``), oldest first, and applies
each event through the normal apply path; de-duplication by event id makes that safe for the
ones that did arrive. Entries applied this way are recorded with source ``log``. A message
dropped while the webhook was ``FAILED`` was never attempted, so it is not in the log: room
presence has to tell about those (:func:`presence`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from typing import Any

from telephony import defaults
from telephony.daily import DailyClient
from telephony.errors import DailyError
from telephony.inbound import to_change
from telephony.record import values
from telephony.store import CallStore, Change, unix_time

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
        store.redis.hincrby(store.keys.metrics, "replayed_log", outcomes["applied"])
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


def presence(store: CallStore, daily: DailyClient) -> dict[str, int]:
    """End answered calls whose leg left the room without a final webhook; counts.

    Looked at: answered calls quiet for ``TELEPHONY_RECONCILE_AFTER``, every answered call last
    heard of before a re-activation of the webhook (deliveries failed meanwhile, and what the
    breaker dropped is in no log), and those already found absent. One ``GET /presence`` covers
    them all; none is made when nothing needs looking at. A leg counts as gone only when it has
    been absent for ``TELEPHONY_PRESENCE_LAG`` seconds (presence trails joins and departures):
    absent at one check, at least that long after its answer, and still absent at a check that
    much later. The call then ends ``stopped`` with reason ``reconciled``, its history
    recording source ``presence`` and how long the leg had been seen gone.
    """
    settings, keys = store.settings, store.keys
    now = time.time()
    absent = {k.decode(): float(v) for k, v in store.redis.hgetall(keys.absent).items()}
    reactivated = unix_time(store.redis.hget(keys.webhook, "reactivatedAt")) or 0.0
    answered: dict[str, tuple[str, float]] = {}  # call id -> room, answered at
    gone = set(absent)  # forgotten unless still answered and open
    open_calls = store.open_calls("state", "room", "updated_at", "answered_at")
    for call_id, fields in (call for batch in open_calls for call in batch):
        state, room, updated, answered_at = fields.values()
        if state != "answered":
            continue
        gone.discard(call_id)
        heard = unix_time(updated) or now
        if call_id in absent or now - heard >= settings.reconcile_after or heard < reactivated:
            answered[call_id] = (room or "", unix_time(answered_at) or heard)
    counts = {"looked": len(answered), "present": 0, "absent": 0, "ended": 0}
    if answered:
        try:
            rooms = daily.presence()
        except DailyError as exc:  # the next check tries again; nothing is decided blind
            log.warning("reconcile: presence unreadable (%s); %d calls wait", exc, len(answered))
            return {**counts, "unreadable": 1}
        for call_id, (room, since) in answered.items():
            here = {str(leg.get("userId")) for leg in rooms.get(room, ())}
            if call_id in here:
                counts["present"] += 1
                gone.add(call_id)
            elif call_id not in absent:
                if now - since >= settings.presence_lag:  # old enough to show if it were there
                    store.redis.hset(keys.absent, call_id, str(now))
                    counts["absent"] += 1
            elif now - absent[call_id] >= settings.presence_lag:
                _end(store, call_id, room, now - absent[call_id])
                counts["ended"] += 1
                gone.add(call_id)
            else:
                counts["absent"] += 1
    if gone:
        store.redis.hdel(keys.absent, *gone)
    if counts["ended"]:
        store.redis.hincrby(keys.metrics, "reconciled_presence", counts["ended"])
        log.warning("reconciled from presence: %(ended)d answered calls had left their room "
                    "without a final webhook; ended", counts)  # fmt: skip
    return counts


def _end(store: CallStore, call_id: str, room: str, absent_for: float) -> None:
    data = {"learnedFrom": "presence", "room": room, "absentSec": round(absent_for, 1)}
    change = Change(trigger="stop", event="call.stopped", source="presence", call_id=call_id,
                    fields=values(reason="reconciled"), data=data)  # fmt: skip
    store.apply(change)

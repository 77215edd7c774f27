"""Daily's webhook, watched: a ``FAILED`` or inactive one is re-activated at once.

Daily's default ``circuit-breaker`` marks a webhook ``FAILED`` after three failed or slow
deliveries and then stops sending, silently and for good: whatever the cause, the service would
be blind from then on. ``telephony register-webhook`` remembers which webhook is ours
(:func:`remember`: its uuid and URL in ``{p}:webhook``); :func:`check`, run once across every
pool by the periodic work every ``TELEPHONY_WEBHOOK_CHECK_INTERVAL`` seconds, reads it back:

- ``FAILED`` (or any state but ``ACTIVE``): re-activated with the same URL (Daily sends its test
  request first), recorded on the feed as ``webhook.reactivated`` with ``data.downSec`` (since
  the later of Daily's last successful push and our last check that found it active), and
  counted (``telephony_webhook_reactivated_total``);
- gone, or our URL no longer registered: said loudly (an error log line when it changes, a
  counter, and ``/readyz`` shows the problem) and never overwritten: another environment may
  own that webhook now.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from telephony import reconcile
from telephony.daily import DailyClient
from telephony.store import CallStore, Change, now_iso, unix_time

log = logging.getLogger(__name__)

ACTIVE = "ACTIVE"


def remember(store: CallStore, webhook: dict[str, Any]) -> None:
    """Make ``webhook`` (Daily's object, as registered) the one the check watches."""
    fields = {"uuid": str(webhook.get("uuid") or ""), "url": str(webhook.get("url") or "")}
    store.redis.hset(store.keys.webhook, mapping={**fields, "status": "active"})


def status(store: CallStore) -> dict[str, str]:
    """What the last check found (``{}`` when no webhook was registered): ``status`` is
    ``active``, ``missing`` or ``reactivated``, with ``checkedAt`` and ``problem``."""
    raw = store.redis.hgetall(store.keys.webhook)
    return {k.decode(): v.decode() for k, v in raw.items()}


def check(store: CallStore, daily: DailyClient) -> dict[str, Any]:
    """Read our webhook from Daily and repair what can be repaired; what was found."""
    known = status(store)
    url = known.get("url")
    if not url:
        return {"status": "unregistered"}
    hooks = daily.list_webhooks()
    ours = next((h for h in hooks if h.get("url") == url), None)
    if ours is None:
        others = sorted(str(h.get("url")) for h in hooks)
        problem = f"no webhook for {url} at Daily" + (
            f" (it has: {', '.join(others)})" if others else ""
        )
        if known.get("status") != "missing":
            log.error("webhook health: %s; run `telephony register-webhook %s`", problem, url)
        _note(store, "missing", problem)
        store.redis.hincrby(store.keys.metrics, "webhook_missing_checks", 1)
        return {"status": "missing", "problem": problem}
    state = str(ours.get("state") or ACTIVE)
    if state == ACTIVE:
        _note(store, "active", "", activeAt=str(time.time()))
        return {"status": "active", "replayed": reconcile.replay(store, daily)}
    uuid = str(ours.get("uuid") or known.get("uuid") or "")
    # It failed after both Daily's last successful push and our last check that saw it active.
    since = max(unix_time(ours.get("lastMomentPushed")) or 0.0, float(known.get("activeAt") or 0))
    down = round(time.time() - since) if since else 0
    daily.update_webhook(uuid, url=url)  # re-activation: Daily sends its test request first
    data = {"webhookId": uuid, "url": url, "state": state, "downSec": down,
            "failedCount": ours.get("failedCount")}  # fmt: skip
    store.apply(Change(trigger="note", event="webhook.reactivated", source="service", data=data))
    store.redis.hincrby(store.keys.metrics, "webhook_reactivated", 1)
    log.warning("webhook health: %s was %s for about %s s; re-activated", url, state, down)
    _note(store, "active", "", reactivatedAt=now_iso(), activeAt=str(time.time()))
    # What Daily tried to deliver while it failed is in its log: applied now, once.
    return {"status": "reactivated", **data, "replayed": reconcile.replay(store, daily)}


def _note(store: CallStore, found: str, problem: str, **extra: str) -> None:
    fields = {"status": found, "problem": problem, "checkedAt": now_iso(), **extra}
    store.redis.hset(store.keys.webhook, mapping=fields)

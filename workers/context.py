"""What a worker process builds once and every job reuses: settings, Redis, Daily's client.

Workers are ``SimpleWorker``s (no fork per job), so the pooled ``requests.Session`` and Redis
connections really are reused from job to job.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from telephony.calls import Calls
from telephony.config import Settings
from telephony.daily import DailyClient
from telephony.dispatch import Dispatch
from telephony.limiter import SlidingWindowLimiter, Slots
from telephony.store import CallStore, connect


@dataclass
class Context:
    settings: Settings
    redis: Any
    store: CallStore
    calls: Calls
    dispatch: Dispatch
    daily: DailyClient
    pacing: SlidingWindowLimiter
    slots: Slots

    @classmethod
    def build(cls, settings: Settings) -> Context:
        client = connect(settings, "a worker", patient=True)
        store = CallStore(client, settings)
        calls = Calls(client, settings, store)
        return cls(
            settings=settings,
            redis=client,
            store=store,
            calls=calls,
            dispatch=calls.dispatch,
            daily=DailyClient.from_settings(settings),
            pacing=SlidingWindowLimiter(client, store.keys.dialout_limit, settings.dialout_limit),
            slots=Slots(client, store.keys, settings.room_leg_limit, settings.max_live_calls),
        )


@cache
def context() -> Context:
    """The process's context, from its environment (see the README's configuration table)."""
    return Context.build(Settings.from_env())

"""How the workers write to a call: every change through the store, marked ``source: worker``."""

from __future__ import annotations

from typing import Any

from telephony.errors import DailyAPIError, DailyError
from telephony.store import Change, Outcome
from workers.context import Context


def record(ctx: Context, trigger: str, event: str, call_id: str, **change: Any) -> Outcome:
    """Apply ``trigger`` to the call (compare-and-set in Redis), recorded as ``event``."""
    return ctx.store.apply(
        Change(trigger=trigger, event=event, source="worker", call_id=call_id, **change)
    )


def note(ctx: Context, call_id: str, event: str, data: Any = None, **fields: Any) -> None:
    """Record something that happened to the call without moving it."""
    record(ctx, "note", event, call_id, data=data, fields=fields)


def error_data(exc: DailyError) -> dict[str, Any]:
    """What a Daily error leaves in the call's history: its class, text and Daily's type."""
    data: dict[str, Any] = {"error": type(exc).__name__, "info": str(exc)}
    if isinstance(exc, DailyAPIError):
        data.update(status=exc.status, type=exc.type)
    return data

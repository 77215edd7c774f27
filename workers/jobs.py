"""The RQ jobs that talk to Daily. Arguments are JSON; every job is safe to run twice.

Each job reads the call, checks its state, acts, and commits the result through the store's
compare-and-set, so a duplicate or late run finds the state moved on and does nothing.

Never ringing twice: the call id goes to Daily as ``userId``. A start whose outcome is unknown
(timeout, dropped connection, worker killed mid-request) is not repeated at once: the call stays
``dialing`` and the watchdog (:mod:`workers.watchdog`) waits ``ambiguous_grace`` seconds for a
webhook carrying its ``user_id`` (which adopts the session); only if none came is it dialled
again.

``DIALOUT_IN_PROGRESS`` policy: another start is in flight *in the same room*; it clears when
that start completes, so it is retried with the same backoff as ``TEMPORARILY_NOT_AVAILABLE``
and counts against the same attempt budget.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any

from rq import get_current_job

from telephony import defaults, machine
from telephony.daily import DailyClient
from telephony.errors import DailyAmbiguousError, DailyError, NotFoundError, RoomFullError
from telephony.record import Add, CallRecord, values
from telephony.store import iso_time
from workers.context import Context, context
from workers.record import error_data, note, record
from workers.retry import retry_delay
from workers.watchdog import next_look, schedule_watchdog, stale_after

__all__ = ["send_dtmf", "start_dialout", "stop_call", "transfer_call"]


# --- starting ---------------------------------------------------------------------------------


def start_dialout(call_id: str, attempt: int) -> str:
    """Start the call's dial-out once it gets a pacing slot (and a live-call slot)."""
    ctx = context()
    call = ctx.store.load(call_id)
    if call is None or call.state != "queued" or call.attempts >= attempt:
        return "skipped"
    if call.stop_requested:  # asked while an earlier attempt was dialing: cancel it
        ctx.calls.stop(call_id)
        return "cancelled"
    watch = schedule_watchdog(ctx, call_id, stale_after(ctx), replaces=call.watch_job)
    room = str(call.room)
    slot = ctx.slots.take(call_id, room)
    if slot in ("room-legs", "live-cap"):
        return _wait(ctx, call, attempt, defaults.SLOT_RECHECK, slot)
    wait = ctx.pacing.acquire()
    if wait > 0:
        if slot == "taken":  # slots "held" belong to another run of this start
            ctx.slots.give_back(call_id, room)
        return _wait(ctx, call, attempt, wait, "pacing")

    dialing_since = iso_time(time.time())
    fields = values(attempts=Add(1), dialing_since=dialing_since)
    if record(ctx, "dial", "call.dialing", call_id, fields=fields).status != "applied":
        if slot == "taken":  # the call ended meanwhile (cancelled): the slots are ours to return
            ctx.slots.give_back(call_id, room)
        return "skipped"  # another run dials (and holds the slot), or the call ended
    body = dict(call.options or {}, userId=call_id)
    try:
        session_id = ctx.daily.start_dialout(str(call.room), body)
    except DailyAmbiguousError as exc:
        # The watchdog armed above looks again once the grace after this start has passed.
        note(ctx, call_id, "call.start_uncertain", error_data(exc))
        return "ambiguous"
    except DailyError as exc:
        return _refused(ctx, call, attempt, exc)

    accepted = record(
        ctx, "accept", "call.accepted", call_id,
        session_id=session_id, data={"sessionId": session_id},
    )  # fmt: skip
    started = dataclasses.replace(call, state=accepted.to_state, dialing_since=dialing_since)
    look = next_look(started, time.time())
    if look is not None:
        schedule_watchdog(ctx, call_id, 0.0, at=look, replaces=watch)
    if ctx.store.fields(call_id, "stop_requested")["stop_requested"]:
        ctx.dispatch.enqueue_stop(call_id)  # asked while Daily was starting it: hang up now
    return accepted.status


def _wait(ctx: Context, call: CallRecord, attempt: int, wait: float, why: str) -> str:
    """Stay queued and come back later: waiting never holds a worker.

    The wait is recorded once, as ``call.waiting`` with ``data.for`` (``pacing``,
    ``room-legs``, ``live-cap``), when the call starts waiting or waits for something else;
    the later looks only move ``nextAttemptAt``, so a call waiting a long time does not fill
    the feed.
    """
    delay = _jittered(ctx, wait)
    next_attempt_at = iso_time(time.time() + delay)
    if call.waiting_for != why:
        fields = values(next_attempt_at=next_attempt_at, waiting_for=why)
        data = {"for": why, "retryIn": round(delay, 3)}
        if record(ctx, "wait", "call.waiting", call.id, data=data, fields=fields).status != (
            "applied"
        ):
            return "skipped"  # no longer queued (stopped meanwhile): nothing to come back for
        ctx.dispatch.enqueue_start(call.id, attempt, delay=delay, waiting=True)
        return f"waiting: {why}"
    pipe = ctx.dispatch.transaction()
    ctx.store.mark(call.id, pipe, next_attempt_at=next_attempt_at)
    ctx.dispatch.enqueue_start(call.id, attempt, delay=delay, waiting=True, pipeline=pipe)
    pipe.execute()
    return f"waiting: {why}"


def _jittered(ctx: Context, wait: float) -> float:
    """``wait`` plus up to half a pacing window, so waiting starts do not come back at once."""
    return wait + random.uniform(0, ctx.settings.dialout_limit.window / 2)


def _refused(ctx: Context, call: CallRecord, attempt: int, exc: DailyError) -> str:
    """Daily said no (or nothing was sent): wait for a leg of a full room, retry the
    retryable, fail the rest at once."""
    call_id = call.id
    ctx.slots.give_back(call_id, str(call.room))
    settings = ctx.settings
    if isinstance(exc, RoomFullError):
        # Legs we do not count (another service's, or a limit Daily set below ours): the
        # start placed nothing and did not count as an attempt; wait as for our own limit.
        delay = _jittered(ctx, defaults.SLOT_RECHECK)
        record(
            ctx, "retry", "call.waiting", call_id,
            data={**error_data(exc), "for": "room-legs", "retryIn": round(delay, 3)},
            fields=values(
                attempts=Add(-1), waiting_for="room-legs",
                next_attempt_at=iso_time(time.time() + delay),
            ),
        )  # fmt: skip
        ctx.dispatch.enqueue_start(call_id, attempt, delay=delay, waiting=True)
        return "waiting: room-legs"
    if exc.retryable and attempt < settings.retry_max_attempts:
        delay = retry_delay(exc, attempt, settings.retry_base, settings.retry_cap)
        record(
            ctx, "retry", "call.retry_scheduled", call_id,
            data={**error_data(exc), "delay": round(delay, 3)},
            fields=values(next_attempt_at=iso_time(time.time() + delay), error=str(exc)),
        )  # fmt: skip
        ctx.dispatch.enqueue_start(call_id, attempt + 1, delay=delay)
        return "retrying"
    reason = "retries-exhausted" if exc.retryable else "refused"
    record(
        ctx, "fail", "call.failed", call_id, data=error_data(exc),
        fields=values(error=str(exc), reason=reason),
    )  # fmt: skip
    return "failed"


# --- commands on a live call ------------------------------------------------------------------


def stop_call(call_id: str) -> str:
    """Hang up through Daily, then record why (our reason wins over the webhook's hang-up)."""
    ctx = context()
    call = ctx.store.load(call_id)
    if call is None or call.state in machine.FINAL:
        return "done"
    reason = call.stop_reason or "stopped"
    session_id = call.session_id
    if not session_id:
        if call.state == "queued":
            ctx.calls.stop(call_id)
        return "no session yet"  # the start job stops it as soon as Daily accepts it
    try:
        ctx.daily.stop_dialout(str(call.room), session_id)
    except NotFoundError:
        pass  # already gone at Daily: record the stop anyway
    except DailyError as exc:
        if exc.retryable and _retries_left():
            raise  # RQ tries again (COMMAND_RETRY_INTERVALS)
        _not_sent(ctx, call_id, "stop", {}, exc)
        # ...which sends the hang-up again.
        schedule_watchdog(ctx, call_id, stale_after(ctx), replaces=call.watch_job)
        return "failed"  # the call stays live in the books until Daily takes the hang-up
    fields = values(reason=reason, ended_at=iso_time(time.time()))
    record(ctx, "stop", "call.stopped", call_id, fields=fields)
    return "stopped"


def _on_session(
    call_id: str,
    name: str,
    payload: dict[str, Any],
    send: Callable[[DailyClient, str, str], None],
    **change: Any,
) -> str:
    """Send a command for the call's session. No command is silent: one that does not reach
    Daily is recorded on the call as ``{name}.failed`` with ``why``: the call ended first,
    Daily refused it, or its retries ran out (retryable errors are raised while RQ has retries
    left, see ``COMMAND_RETRY_INTERVALS``).
    """
    ctx = context()
    call = ctx.store.load(call_id)
    if call is None:
        return "no call"  # expired long ago: nothing left to record it on
    if call.state in machine.FINAL or not call.session_id:
        note(ctx, call_id, f"{name}.failed", {**payload, "why": "the call ended first"})
        return "ended first"
    try:
        send(ctx.daily, str(call.room), call.session_id)
    except DailyError as exc:
        if exc.retryable and _retries_left():
            raise
        _not_sent(ctx, call_id, name, payload, exc)
        return "failed"
    record(ctx, data=payload, call_id=call_id, **change)
    return "sent"


def _retries_left() -> bool:
    """Whether RQ will run the current job again if it raises (its ``Retry`` not spent)."""
    job = get_current_job()
    return bool(job is not None and job.retries_left)


def _not_sent(
    ctx: Context, call_id: str, name: str, payload: dict[str, Any], exc: DailyError
) -> None:
    why = "retries exhausted" if exc.retryable else "Daily refused it"
    note(ctx, call_id, f"{name}.failed", {**payload, **error_data(exc), "why": why})


def send_dtmf(call_id: str, dtmf: dict[str, Any]) -> str:
    def send(daily: DailyClient, room: str, session_id: str) -> None:
        daily.send_dtmf(
            room, session_id, dtmf["tones"],
            digit_duration_ms=dtmf.get("digitDurationMs"), method=dtmf.get("method"),
        )  # fmt: skip

    return _on_session(call_id, "dtmf", dtmf, send, trigger="send_dtmf", event="dtmf.sent")


def transfer_call(call_id: str, transfer: dict[str, Any]) -> str:
    target = transfer["toEndPoint"]

    def send(daily: DailyClient, room: str, session_id: str) -> None:
        if transfer.get("refer"):
            daily.sip_refer(room, session_id, target)
        else:
            daily.sip_call_transfer(
                room, session_id, target,
                caller_id=transfer.get("callerId"), extension=transfer.get("extension"),
                wait_before_extension_dial_sec=transfer.get("waitBeforeExtensionDialSec"),
            )  # fmt: skip

    return _on_session(
        call_id, "transfer", transfer, send,
        trigger="transfer", event="transfer.requested",
        fields=values(transfer_requested=target),
    )  # fmt: skip

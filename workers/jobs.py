"""The RQ jobs that talk to Daily. Arguments are JSON; every job is safe to run twice.

Each job reads the call, checks its state, acts, and commits the result through the store's
compare-and-set, so a duplicate or late run finds the state moved on and does nothing.

Never ringing twice: the call id goes to Daily as ``userId``. A start whose outcome is unknown
(timeout, dropped connection, worker killed mid-request) is not repeated at once: the call stays
``dialing`` and the :func:`watchdog` waits ``ambiguous_grace`` seconds for a webhook carrying
its ``user_id`` (which adopts the session); only if none came is it dialled again.

``DIALOUT_IN_PROGRESS`` policy: another start is in flight *in the same room*; it clears when
that start completes, so it is retried with the same backoff as ``TEMPORARILY_NOT_AVAILABLE``
and counts against the same attempt budget.
"""

from __future__ import annotations

import contextlib
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from telephony import defaults
from telephony.calls import START_JOB, WATCHDOG_JOB, job_id
from telephony.errors import (
    DailyAmbiguousError,
    DailyAPIError,
    DailyError,
    NotFoundError,
)
from telephony.store import Change
from workers.context import Context, context
from workers.retry import retry_delay

_ALIVE = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.STARTED}
_UNANSWERED = frozenset({"dialing", "ringing", "connected"})


def _note(ctx: Context, call_id: str, event: str, data: Any = None, **fields: Any) -> None:
    ctx.store.apply(
        Change(
            trigger="note", event=event, source="worker", call_id=call_id, data=data, fields=fields
        )
    )


def _error_data(exc: DailyError) -> dict[str, Any]:
    data: dict[str, Any] = {"error": type(exc).__name__, "info": str(exc)}
    if isinstance(exc, DailyAPIError):
        data.update(status=exc.status, type=exc.type)
    return data


# --- starting ---------------------------------------------------------------------------------


def start_dialout(call_id: str, attempt: int) -> str:
    """Start the call's dial-out once it gets a pacing slot (and a live-call slot)."""
    ctx = context()
    call = ctx.store.get(call_id, history=False, internal=True)
    if call is None or call["state"] != "queued" or call["attempts"] >= attempt:
        return "skipped"
    if call.get("stopRequested"):  # asked while an earlier attempt was dialing: cancel it
        ctx.calls.stop(call_id)
        return "cancelled"
    schedule_watchdog(ctx, call_id, _stale_after(ctx))
    slot = ctx.live.take(call_id)
    if not slot:
        return _wait(ctx, call_id, attempt, defaults.LIVE_CALLS_RECHECK, "live-call cap")
    wait = ctx.pacing.acquire()
    if wait > 0:
        if slot == "taken":  # a slot "held" belongs to another run of this start
            ctx.live.give_back(call_id)
        return _wait(ctx, call_id, attempt, wait, "dial-out rate limit")

    dialing = ctx.store.apply(
        Change(
            trigger="dial",
            event="call.dialing",
            source="worker",
            call_id=call_id,
            fields={"+attempts": 1, "dialingSince": time.time(), "nextAttemptAt": None},
        )
    )
    if dialing.status != "applied":  # another run dials (and holds the slot), or it ended
        return "skipped"
    body = dict(call["options"], userId=call_id)
    try:
        session_id = ctx.daily.start_dialout(call["room"], body)
    except DailyAmbiguousError as exc:
        _note(ctx, call_id, "call.start_uncertain", _error_data(exc))
        schedule_watchdog(ctx, call_id, ctx.settings.ambiguous_grace)
        return "ambiguous"
    except DailyError as exc:
        return _refused(ctx, call_id, attempt, exc)

    accepted = ctx.store.apply(
        Change(
            trigger="accept",
            event="call.accepted",
            source="worker",
            call_id=call_id,
            session_id=session_id,
            data={"sessionId": session_id},
        )
    )
    now = ctx.store.get(call_id, history=False, internal=True)
    look = next_look(now, time.time())
    if look is not None:
        schedule_watchdog(ctx, call_id, 0.0, at=look)
    if now is not None and now.get("stopRequested"):
        ctx.calls.stop(call_id)
    return accepted.status


def _wait(ctx: Context, call_id: str, attempt: int, wait: float, why: str) -> str:
    """Stay queued and come back later: waiting never holds a worker."""
    delay = wait + random.uniform(0, ctx.settings.dialout_limit.window / 2)
    due = datetime.now(UTC) + timedelta(seconds=delay)
    ctx.store.redis.hset(
        ctx.store.keys.call(call_id),
        mapping={
            "nextAttemptAt": due.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "waitingFor": why,
        },
    )
    waits = int(ctx.store.redis.hincrby(ctx.store.keys.call(call_id), "waits", 1))
    ctx.calls.enqueue_start(call_id, attempt, delay=delay, wait=waits)
    return f"waiting: {why}"


def _refused(ctx: Context, call_id: str, attempt: int, exc: DailyError) -> str:
    """Daily said no (or nothing was sent): retry the retryable, fail the rest at once."""
    ctx.live.give_back(call_id)
    settings = ctx.settings
    if exc.retryable and attempt < settings.retry_max_attempts:
        delay = retry_delay(exc, attempt, settings.retry_base, settings.retry_cap)
        due = datetime.now(UTC) + timedelta(seconds=delay)
        ctx.store.apply(
            Change(
                trigger="retry",
                event="call.retry_scheduled",
                source="worker",
                call_id=call_id,
                data={**_error_data(exc), "delay": round(delay, 3)},
                fields={
                    "nextAttemptAt": due.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "error": str(exc),
                },
            )
        )
        ctx.calls.enqueue_start(call_id, attempt + 1, delay=delay)
        return "retrying"
    reason = "retries-exhausted" if exc.retryable else "refused"
    ctx.store.apply(
        Change(
            trigger="fail",
            event="call.failed",
            source="worker",
            call_id=call_id,
            data=_error_data(exc),
            fields={"error": str(exc), "reason": reason, "nextAttemptAt": None},
        )
    )
    return "failed"


# --- the watchdog: timers Daily does not have -------------------------------------------------


def _stale_after(ctx: Context) -> float:
    """Seconds after which a start that gave no news is considered lost."""
    return defaults.DAILY_CONNECT_TIMEOUT + ctx.settings.daily_read_timeout + 1.0


def _parse_time(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float(value)


def call_deadline(call: dict[str, Any] | None) -> float | None:
    """When the ring timeout or the maximum duration will end this call, if ever."""
    if call is None:
        return None
    state = call["state"]
    if state in ("ringing", "connected", "dialing") and call.get("ringTimeoutSec"):
        since = _parse_time(call.get("dialingSince"))
        return None if since is None else since + call["ringTimeoutSec"]
    if state == "answered" and call.get("maxDurationSec"):
        since = _parse_time(call.get("answeredAt"))
        return None if since is None else since + call["maxDurationSec"]
    return None


def next_look(call: dict[str, Any] | None, now: float) -> float | None:
    """When the watchdog must next look at a live call: its deadline, but no later than
    :data:`~telephony.defaults.ANSWER_RECHECK` from now while a call with a maximum duration
    is not answered yet (the answer, a webhook, schedules nothing)."""
    deadline = call_deadline(call)
    if call is not None and call.get("maxDurationSec") and call["state"] in _UNANSWERED:
        soon = now + defaults.ANSWER_RECHECK
        return soon if deadline is None else min(deadline, soon)
    return deadline


def schedule_watchdog(ctx: Context, call_id: str, delay: float, at: float | None = None) -> None:
    """(Re)schedule the call's one watchdog; an earlier scheduled run becomes a no-op."""
    due = at if at is not None else time.time() + delay
    due_ms = int(due * 1000)
    ctx.store.redis.hset(ctx.store.keys.call(call_id), "watchDue", due_ms)
    when = datetime.fromtimestamp(due, UTC)
    ctx.calls.queue.enqueue_at(
        when,
        WATCHDOG_JOB,
        call_id,
        due_ms,
        job_id=job_id(ctx.settings, "watch", call_id, due_ms),
        result_ttl=600,
    )


def watchdog(call_id: str, due_ms: int) -> str:
    """Fire the call's timers and recover starts that were lost; reschedules itself first."""
    ctx = context()
    call = ctx.store.get(call_id, history=False, internal=True)
    if call is None or call["state"] in ("stopped", "error"):
        return "done"
    if str(call.get("watchDue")) != str(due_ms):
        return "superseded"
    if call.get("stopRequested") and call.get("sessionId") and call["state"] != "queued":
        ctx.calls.stop(call_id)  # asked before the session was known: hang up now
        return "stopping"
    now = time.time()
    state = call["state"]
    deadline = call_deadline(call)
    if deadline is not None and now >= deadline:
        reason = "no-answer" if state != "answered" else "max-duration"
        ctx.store.redis.hset(ctx.store.keys.call(call_id), "stopReason", reason)
        _note(ctx, call_id, f"call.{reason.replace('-', '_')}", {"deadline": deadline})
        ctx.calls.stop(call_id)
        return reason
    if state == "queued":
        schedule_watchdog(ctx, call_id, _stale_after(ctx))
        if not _start_pending(ctx, call):
            ctx.calls.enqueue_start(call_id, call["attempts"] + 1)
            return "restarted"
        return "waiting"
    if state == "dialing" and not call.get("sessionId"):
        since = _parse_time(call.get("dialingSince")) or now
        silent_until = since + _stale_after(ctx) + ctx.settings.ambiguous_grace
        if now < silent_until:
            schedule_watchdog(ctx, call_id, 0.0, at=silent_until)
            return "waiting"
        return _redial(ctx, call)
    look = next_look(call, now)
    if look is not None:
        schedule_watchdog(ctx, call_id, 0.0, at=look)
    return "watching"


def _start_pending(ctx: Context, call: dict[str, Any]) -> bool:
    """Whether the call's latest start job is queued, scheduled or (recently) running."""
    name = call.get("startJob")
    if not name:
        return False
    try:
        job = Job.fetch(name, connection=ctx.redis, serializer=ctx.calls.queue.serializer)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status == JobStatus.STARTED and job.started_at is not None:
        lease = job.started_at.replace(tzinfo=UTC).timestamp() + _stale_after(ctx) + 60
        return time.time() < lease
    return status in _ALIVE


def _redial(ctx: Context, call: dict[str, Any]) -> str:
    """No answer to the start and no webhook for its ``user_id``: no call was placed."""
    call_id, attempt = call["id"], call["attempts"]
    if attempt >= ctx.settings.retry_max_attempts:
        ctx.store.apply(
            Change(
                trigger="fail",
                event="call.failed",
                source="worker",
                call_id=call_id,
                fields={
                    "error": "no answer from Daily and no webhook",
                    "reason": "retries-exhausted",
                },
            )
        )
        return "failed"
    retried = ctx.store.apply(
        Change(
            trigger="retry",
            event="call.start_lost",
            source="worker",
            call_id=call_id,
            data={"grace": ctx.settings.ambiguous_grace},
        )
    )
    if retried.status == "applied":  # not adopted meanwhile by a late webhook
        ctx.live.give_back(call_id)
        ctx.calls.enqueue_start(call_id, attempt + 1)
        return "redialed"
    return "skipped"


# --- commands on a live call ------------------------------------------------------------------


def stop_call(call_id: str) -> str:
    """Hang up through Daily, then record why (our reason wins over the webhook's hang-up)."""
    ctx = context()
    call = ctx.store.get(call_id, history=False, internal=True)
    if call is None or call["state"] in ("stopped", "error"):
        return "done"
    reason = call.get("stopReason") or "stopped"
    session_id = call.get("sessionId")
    if not session_id:
        if call["state"] == "queued":
            ctx.calls.stop(call_id)
        return "no session yet"  # the start job stops it as soon as Daily accepts it
    with contextlib.suppress(NotFoundError):  # already gone at Daily: record the stop anyway
        ctx.daily.stop_dialout(call["room"], session_id)
    ctx.store.apply(
        Change(
            trigger="stop",
            event="call.stopped",
            source="worker",
            call_id=call_id,
            fields={"reason": reason, "endedAt": datetime.now(UTC).isoformat()},
        )
    )
    return "stopped"


def send_dtmf(call_id: str, dtmf: dict[str, Any]) -> str:
    ctx = context()
    call = ctx.store.get(call_id, history=False, internal=True)
    if call is None or not call.get("sessionId"):
        return "no session"
    try:
        ctx.daily.send_dtmf(
            call["room"],
            call["sessionId"],
            dtmf["tones"],
            digit_duration_ms=dtmf.get("digitDurationMs"),
            method=dtmf.get("method"),
        )
    except DailyError as exc:
        if exc.retryable:
            raise
        _note(ctx, call_id, "dtmf.failed", {**dtmf, **_error_data(exc)})
        return "failed"
    ctx.store.apply(
        Change(trigger="send_dtmf", event="dtmf.sent", source="worker", call_id=call_id, data=dtmf)
    )
    return "sent"


def transfer_call(call_id: str, transfer: dict[str, Any]) -> str:
    ctx = context()
    call = ctx.store.get(call_id, history=False, internal=True)
    if call is None or not call.get("sessionId"):
        return "no session"
    room, session_id, target = call["room"], call["sessionId"], transfer["toEndPoint"]
    try:
        if transfer.get("refer"):
            ctx.daily.sip_refer(room, session_id, target)
        else:
            ctx.daily.sip_call_transfer(
                room,
                session_id,
                target,
                caller_id=transfer.get("callerId"),
                extension=transfer.get("extension"),
                wait_before_extension_dial_sec=transfer.get("waitBeforeExtensionDialSec"),
            )
    except DailyError as exc:
        if exc.retryable:
            raise
        _note(ctx, call_id, "transfer.failed", {**transfer, **_error_data(exc)})
        return "failed"
    ctx.store.apply(
        Change(
            trigger="transfer",
            event="transfer.requested",
            source="worker",
            call_id=call_id,
            data=transfer,
            fields={"transferredTo": target},
        )
    )
    return "requested"


__all__ = ["START_JOB", "send_dtmf", "start_dialout", "stop_call", "transfer_call", "watchdog"]

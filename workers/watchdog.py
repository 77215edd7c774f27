"""The call's watchdog: the timers Daily does not have, and recovery of lost starts.

One scheduled RQ job per call at a time (``watchDue`` on the call names the current one; an
older run finds it superseded). It fires ``ringTimeoutSec`` and ``maxDurationSec`` even when no
webhook ever comes, puts a queued call whose start job was lost back on the queue, and redials a
call whose start had an unknown outcome only after ``ambiguous_grace`` passed with no webhook
carrying its ``user_id`` (never ringing a person twice).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from telephony import defaults
from telephony.dispatch import start_stale_after
from telephony.record import CallRecord, values
from telephony.store import unix_time
from workers.context import Context, context
from workers.record import note, record

log = logging.getLogger(__name__)

_ALIVE = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.STARTED}
_UNANSWERED = frozenset({"dialing", "ringing", "connected"})
_WATCHED = frozenset({"queued", *_UNANSWERED, "answered"})


def stale_after(ctx: Context) -> float:
    """Seconds after which a start that gave no news is considered lost."""
    return start_stale_after(ctx.settings)


def call_deadline(call: CallRecord | None) -> float | None:
    """When the ring timeout or the maximum duration will end this call.

    Calls without their own limits get the ceilings (``RING_TIMEOUT_MAX``,
    ``MAX_DURATION_MAX``): Daily may drop the webhook that ends a call (circuit breaker,
    exhausted retries), and a call must not stay live in our books forever.
    """
    if call is None:
        return None
    state = call.state
    if state in _UNANSWERED:
        since = unix_time(call.dialing_since)
        ring = call.ring_timeout_sec or defaults.RING_TIMEOUT_MAX
        return None if since is None else since + ring
    if state == "answered":
        since = unix_time(call.answered_at)
        limit = call.max_duration_sec or defaults.MAX_DURATION_MAX
        return None if since is None else since + limit
    return None


def next_look(call: CallRecord | None, now: float) -> float | None:
    """When the watchdog must next look at a live call: its deadline, but no later than
    :data:`~telephony.defaults.ANSWER_RECHECK` from now while a call with a maximum duration
    is not answered yet (the answer, a webhook, schedules nothing)."""
    deadline = call_deadline(call)
    if call is not None and call.max_duration_sec and call.state in _UNANSWERED:
        soon = now + defaults.ANSWER_RECHECK
        return soon if deadline is None else min(deadline, soon)
    return deadline


def schedule_watchdog(
    ctx: Context,
    call_id: str,
    delay: float,
    at: float | None = None,
    replaces: str | None = None,
) -> str:
    """(Re)schedule the call's one watchdog, ``delay`` seconds from now or ``at``, deleting
    the job it ``replaces`` (the call's ``watchJob`` as the caller read it); its id."""
    due = at if at is not None else time.time() + delay
    return ctx.dispatch.schedule_watchdog(call_id, due, replaces=replaces)


def watchdog(call_id: str, due_ms: int) -> str:
    """Fire the call's timers and recover starts that were lost.

    The next run is scheduled *before* acting, on every path that leaves the call live: a
    crash, a failed stop job or a late webhook can never leave a call unwatched.
    """
    ctx = context()
    call = ctx.store.load(call_id)
    if call is None or call.state not in _WATCHED:
        return "done"  # finished (or a record that never became a call)
    if call.watch_due != due_ms:
        return "superseded"
    if call.kind == "dialin":
        return _watch_dialin(ctx, call)
    now = time.time()
    state, session = call.state, call.session_id
    since = unix_time(call.dialing_since) or now
    silent_until = since + stale_after(ctx) + ctx.settings.ambiguous_grace
    unsure = state == "dialing" and not session  # a start with no news yet
    deadline = call_deadline(call)
    expired = deadline is not None and now >= deadline

    if call.stop_requested or expired:
        later = silent_until if unsure and now < silent_until else now + stale_after(ctx)
        schedule_watchdog(ctx, call_id, 0.0, at=later, replaces=call.watch_job)
        reason = call.stop_reason or "cancelled"
        if expired and not call.stop_requested:
            reason = "no-answer" if state != "answered" else "max-duration"
            ctx.store.mark(call_id, stop_reason=reason, stop_requested=1)
            note(ctx, call_id, f"call.{reason.replace('-', '_')}", {"deadline": deadline})
        if unsure and now >= silent_until:  # nothing was placed, as far as anyone can know
            record(ctx, "stop", "call.stopped", call_id, fields=values(reason=reason))
            return "stopped"
        if unsure:
            return "stopping"
        if call.stop_requested and state != "queued":
            ctx.dispatch.enqueue_stop(call_id)  # recorded before: only the hang-up is re-sent
        else:
            ctx.calls.stop(call_id)  # queued: cancelled now; live: recorded, then hung up
        return "stopping"
    if state == "queued":
        schedule_watchdog(ctx, call_id, stale_after(ctx), replaces=call.watch_job)
        if not _start_pending(ctx, call):
            ctx.dispatch.enqueue_start(call_id, call.attempts + 1)
            return "restarted"
        return "waiting"
    if unsure:
        if now < silent_until:
            schedule_watchdog(ctx, call_id, 0.0, at=silent_until, replaces=call.watch_job)
            return "waiting"
        schedule_watchdog(ctx, call_id, stale_after(ctx), replaces=call.watch_job)
        return _redial(ctx, call)
    look = next_look(call, now)
    schedule_watchdog(
        ctx, call_id, stale_after(ctx) if look is None else 0.0, at=look, replaces=call.watch_job
    )
    return "watching"


def _watch_dialin(ctx: Context, call: CallRecord) -> str:
    """A dial-in session's ceiling (``TELEPHONY_DIALIN_MAX_DURATION`` after it began): Daily
    may drop the webhook that ends it, and a session must not stay live in the books forever.
    There is no dial-out hang-up for it: it is ended in the books, with reason max-duration."""
    call_id = call.id
    since = unix_time(call.created_at)
    if since is None:
        return "done"
    deadline = since + ctx.settings.dialin_max_duration
    if time.time() < deadline:
        schedule_watchdog(ctx, call_id, 0.0, at=deadline, replaces=call.watch_job)
        return "watching"
    note(ctx, call_id, "call.max_duration", {"deadline": deadline})
    fields = values(reason="max-duration", ended_at=time.time())
    record(ctx, "stop", "call.stopped", call_id, fields=fields)
    return "stopped"


def _start_pending(ctx: Context, call: CallRecord) -> bool:
    """Whether the call's latest start job is queued, scheduled or (recently) running."""
    name = call.start_job
    return bool(name) and _job_alive(ctx, str(name))


def _job_alive(ctx: Context, name: str) -> bool:
    """Whether job ``name`` is queued, scheduled or running (see :func:`_alive`)."""
    try:
        job = Job.fetch(name, connection=ctx.redis, serializer=ctx.dispatch.queue.serializer)
    except NoSuchJobError:
        return False
    return _alive(ctx, job)


def _alive(ctx: Context, job: Job | None) -> bool:
    """Whether ``job`` is queued, scheduled or running for less than its lease: a worker
    killed mid-job leaves it "started" until RQ notices, minutes later."""
    if job is None:
        return False
    status = job.get_status(refresh=False)
    if status == JobStatus.STARTED and job.started_at is not None:
        lease = job.started_at.replace(tzinfo=UTC).timestamp() + stale_after(ctx) + 60
        return time.time() < lease
    return status in _ALIVE


def sweep(ctx: Context) -> dict[str, int]:
    """Take up every open call that nothing is looking after; counts of what was found.

    A dial-in session (created by its webhook) gets its first watchdog (its ceiling). A live
    call whose watchdog job is gone, or a queued call with no start job, gets its watchdog
    re-armed now: the watchdog then acts by its own rules (a lost start is queued
    again, an unsure start is redialled only after its grace, deadlines are enforced), so the
    sweep itself never dials. Run by the periodic work (:mod:`workers.periodic`), once across
    every pool, in batches of two round trips; calls that ended or expired leave the index.
    """
    keys, found = ctx.store.keys, {"open": 0, "rearmed": 0, "armed": 0, "forgotten": 0}
    for batch in ctx.store.open_calls("state", "watch_due", "start_job", "kind"):
        checks: list[tuple[str, str, str | None]] = []  # call, watchdog job, start job
        gone = []
        for call_id, fields in batch:
            state, due, start, kind = fields.values()
            if state not in _WATCHED:
                gone.append(call_id)
                continue
            if kind == "dialin" and not due:  # created by a webhook: first watched here
                schedule_watchdog(ctx, call_id, 0.0)
                found["open"] += 1
                found["armed"] += 1
                continue
            watch = ctx.dispatch.watchdog_id(call_id, due) if due else ""
            # Only a queued call needs a start job: later states have had theirs.
            needs = (start or "") if state == "queued" else None
            checks.append((call_id, watch, needs))
        names = [name for _, watch, start in checks for name in (watch, start) if name]
        jobs = dict(zip(names, _fetch(ctx, names), strict=True))
        for call_id, watch, start in checks:
            found["open"] += 1
            lost_start = start is not None and not _alive(ctx, jobs.get(start))
            if lost_start or not _alive(ctx, jobs.get(watch)):
                schedule_watchdog(ctx, call_id, 0.0, replaces=watch)
                found["rearmed"] += 1
        if gone:
            ctx.redis.zrem(keys.open, *gone)
            found["forgotten"] += len(gone)
    if found["rearmed"]:
        log.warning("sweep: %(rearmed)d of %(open)d open calls had lost their jobs; "
                    "their watchdogs are re-armed", found)  # fmt: skip
    return found


def _fetch(ctx: Context, names: list[str]) -> list[Job | None]:
    """Jobs by id, in one round trip (None for a missing one)."""
    if not names:
        return []
    jobs: list[Job | None] = Job.fetch_many(
        names, connection=ctx.redis, serializer=ctx.dispatch.queue.serializer
    )
    return jobs


def _redial(ctx: Context, call: CallRecord) -> str:
    """No answer to the start and no webhook for its ``user_id``: no call was placed."""
    call_id, attempt = call.id, call.attempts
    if attempt >= ctx.settings.retry_max_attempts:
        fields = values(error="no answer from Daily and no webhook", reason="retries-exhausted")
        record(ctx, "fail", "call.failed", call_id, fields=fields)
        return "failed"
    grace = {"grace": ctx.settings.ambiguous_grace}
    if record(ctx, "retry", "call.start_lost", call_id, data=grace).status == "applied":
        ctx.slots.give_back(call_id, str(call.room))  # not adopted meanwhile by a late webhook
        ctx.dispatch.enqueue_start(call_id, attempt + 1)
        return "redialed"
    return "skipped"

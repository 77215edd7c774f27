"""Every job's name, id, queue, timeout and enqueue, in one place.

The commands (:mod:`telephony.calls`) and the workers (:mod:`workers.watchdog`,
:mod:`workers.jobs`) queue jobs only through :class:`Dispatch`; job function paths are strings,
so the web process never imports the workers.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from rq import Queue, Retry, get_current_job
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from telephony import defaults, machine
from telephony.config import Settings
from telephony.store import CallStore

#: Function paths of the jobs (strings, so the web process never imports the workers).
START_JOB = "workers.jobs.start_dialout"
WATCHDOG_JOB = "workers.watchdog.watchdog"
STOP_JOB = "workers.jobs.stop_call"
DTMF_JOB = "workers.jobs.send_dtmf"
TRANSFER_JOB = "workers.jobs.transfer_call"


#: How long RQ keeps what a job leaves: no result, failures a week (``defaults``).
_KEEP: dict[str, Any] = {
    "result_ttl": defaults.JOB_RESULT_TTL,
    "failure_ttl": defaults.JOB_FAILURE_TTL,
}


def start_stale_after(settings: Settings) -> float:
    """Seconds after which a start that gave no news is considered lost: the longest a start
    request can take (connect + read timeouts), plus a second."""
    return defaults.DAILY_CONNECT_TIMEOUT + settings.daily_read_timeout + 1.0


def make_queue(client: redis.Redis, settings: Settings, name: str | None = None) -> Queue:
    """A queue of the service's jobs (the main one by default), with JSON-only arguments."""
    return Queue(name or settings.queue_name, connection=client, serializer=JSONSerializer)


def command_queue_name(settings: Settings) -> str:
    """The command lane: stop, DTMF, transfer and refer, never behind starts or timers."""
    return settings.queue_name + defaults.COMMAND_QUEUE_SUFFIX


def make_queues(client: redis.Redis, settings: Settings) -> list[Queue]:
    """Every queue, in the order a worker listens to them: the command lane first."""
    return [
        make_queue(client, settings, command_queue_name(settings)),
        make_queue(client, settings),
    ]


def job_id(settings: Settings, kind: str, call_id: str, *parts: object) -> str:
    """Job ids derived from the call, so re-enqueueing the same step is harmless.

    RQ allows only ``[A-Za-z0-9_-]`` in ids, and ``-`` separates the words here. A call id of
    word characters appears as ``i`` + the id; any other as ``h`` + a digest of it: the two
    forms never meet, so no caller-chosen id can name another call's jobs (an id shaped like
    another's digest becomes ``ih...``).
    """
    words = [_word(settings.key_prefix), kind, _call_word(call_id), *map(str, parts)]
    return "-".join(words)


_JOB_ID_SAFE = re.compile(r"[A-Za-z0-9_]+")


def _call_word(call_id: str) -> str:
    return "i" + call_id if _JOB_ID_SAFE.fullmatch(call_id) else _digest_word(call_id)


def _word(word: str) -> str:
    return word if _JOB_ID_SAFE.fullmatch(word) else _digest_word(word)


def _digest_word(word: str) -> str:
    return "h" + hashlib.sha256(word.encode()).hexdigest()[:20]


class Dispatch:
    """Queues the jobs of calls on the service's queue (one per settings' ``queue_name``)."""

    def __init__(self, client: redis.Redis, settings: Settings, store: CallStore) -> None:
        self.redis: Any = client
        self.settings = settings
        self.store = store
        self.queue = make_queue(client, settings)
        #: The command lane (:func:`command_queue_name`): listened to first by every worker,
        #: and alone by each pool's reserve worker.
        self.commands = make_queue(client, settings, command_queue_name(settings))

    def enqueue_start(
        self,
        call_id: str,
        attempt: int,
        delay: float = 0.0,
        waiting: bool = False,
        pipeline: Any = None,
    ) -> None:
        """Queue (or schedule) the start; the watchdog covers a start job that gets lost.

        The id is the call's and the attempt's, so enqueueing the same attempt twice is
        harmless; a start ``waiting`` for its turn gets an id of its own, since a job must not
        re-enqueue itself under the id it is running as. The id
        of the latest start job is kept on the call (``startJob``) for the watchdog.
        """
        parts: tuple[object, ...] = (attempt, f"w{uuid.uuid4().hex[:8]}") if waiting else (attempt,)
        start_id = job_id(self.settings, "start", call_id, *parts)
        pipe = pipeline if pipeline is not None else self.transaction()
        self.store.mark(call_id, pipe, start_job=start_id)
        options: dict[str, Any] = {"job_id": start_id, "pipeline": pipe, **_KEEP}
        if delay > 0:
            self.queue.enqueue_in(timedelta(seconds=delay), START_JOB, call_id, attempt, **options)
        else:
            self.queue.enqueue(START_JOB, call_id, attempt, **options)
        if pipeline is None and self._ended(call_id, pipe)[0]:
            self.store.mark(call_id, start_job=None)  # the job itself finds it ended: skipped

    def transaction(self) -> Any:
        """A MULTI pipeline, opened up front: RQ's enqueue calls MULTI itself unless it is."""
        pipe = self.redis.pipeline()
        pipe.multi()
        return pipe

    def schedule_watchdog(
        self, call_id: str, due: float, pipeline: Any = None, replaces: str | None = None
    ) -> str:
        """(Re)schedule the call's one watchdog at ``due`` (UNIX time). The job, ``watchDue``
        and ``watchJob`` are written in one transaction: a crash between them must not leave
        the call naming a job that does not exist.

        The job it ``replaces`` (the call's ``watchJob``, which the caller has read with the
        call: no round trip here) is deleted in the same transaction; an older one that ran
        anyway would find itself superseded, but would hold its 1.5 KB until then. Returns the
        new job's id, which a later re-arm by the same caller replaces. A job never reuses the
        id of the job running it: RQ deletes a finished job (``JOB_RESULT_TTL``), and a
        watchdog that RQ started early and that re-arms at the same due time would delete its
        own successor.
        """
        due_ms = int(due * 1000)
        running = get_current_job()
        running_id = running.id if running is not None else None
        if self.watchdog_id(call_id, due_ms) == running_id:
            due_ms += 1
        name = self.watchdog_id(call_id, due_ms)
        pipe = pipeline if pipeline is not None else self.transaction()
        if pipeline is None:  # the watchdog current when this commits, whoever armed it
            pipe.hget(self.store.keys.call(call_id), "watchJob")
        self.queue.enqueue_at(
            datetime.fromtimestamp(due_ms / 1000, UTC),
            WATCHDOG_JOB,
            call_id,
            due_ms,
            job_id=name,
            pipeline=pipe,
            **_KEEP,
        )
        self.store.mark(call_id, pipe, watch_due=due_ms, watch_job=name)
        if replaces and replaces not in (name, running_id):  # RQ deletes the running one
            self._delete_watchdog(pipe, replaces)
        if pipeline is None:
            ended, results = self._ended(call_id, pipe)
            current = (results[0] or b"").decode()
            if ended:
                self._unarm(call_id, name)
            elif current and current not in (name, replaces, running_id):
                self._drop_if_scheduled(current)
        return name

    def _delete_watchdog(self, pipe: Any, job_id: str) -> None:
        """A watchdog job gone, record and schedule, in the transaction ``pipe``."""
        pipe.delete(Job.key_for(job_id))
        pipe.zrem(self.queue.scheduled_job_registry.key, job_id)

    def _drop_if_scheduled(self, job_id: str) -> None:
        """Delete a watchdog another job armed after our caller read the call (two re-arms
        at once: a start job and the watchdog it raced). Only while it is still scheduled:
        one already queued or running finds itself superseded, and RQ deletes it after."""
        if self.redis.zrem(self.queue.scheduled_job_registry.key, job_id):
            self.redis.delete(Job.key_for(job_id))

    def _ended(self, call_id: str, pipe: Any) -> tuple[bool, list[Any]]:
        """Execute ``pipe`` (a transaction) with the call's state read last: had the call
        ended before it committed? Its end then removed the bookkeeping it knew of, and what
        this transaction added is the caller's to take back. Also the transaction's replies."""
        pipe.hget(self.store.keys.call(call_id), "state")
        results = pipe.execute()
        return (results[-1] or b"").decode() in machine.FINAL, results

    def _unarm(self, call_id: str, name: str) -> None:
        """Take back a re-arm that committed after the call had ended.

        A worker re-arms from what it read; the call's end may commit in between (a webhook,
        another job). Its end removed the watchdog it knew of, so this one would wait to run
        for nothing and put bookkeeping back on an ended call. The state read inside the
        re-arm's transaction tells which came first (:meth:`_ended`); when the end did, undo,
        no round trip otherwise (an end after the re-arm finds it in ``watchJob``, as ever).
        """
        pipe = self.transaction()
        self._delete_watchdog(pipe, name)
        self.store.mark(call_id, pipe, watch_due=None, watch_job=None)
        pipe.execute()

    def watchdog_id(self, call_id: str, due_ms: int | bytes | str) -> str:
        """The id of the call's watchdog job due at ``due_ms`` (the call's ``watchDue``)."""
        due = due_ms.decode() if isinstance(due_ms, bytes) else due_ms
        return job_id(self.settings, "watch", call_id, due)

    def enqueue_stop(self, call_id: str) -> None:
        """Queue the hang-up of a call whose stop is already recorded (at most one queued)."""
        self.enqueue_command(STOP_JOB, "stop", call_id, once=True)

    def enqueue_command(
        self, func: str, kind: str, call_id: str, *args: Any, once: bool = False
    ) -> None:
        """Queue a command job; Daily's retryable errors are retried by RQ with backoff.

        ``once``: one such job per call at a time (a second stop while the first is still
        queued adds nothing); otherwise every request gets its own job.
        """
        parts: tuple[object, ...] = () if once else (uuid.uuid4().hex[:12],)
        name = job_id(self.settings, kind, call_id, *parts)
        if once:
            queued = self.commands.fetch_job(name)
            waiting = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)
            if queued is not None and queued.get_status() in waiting:
                return
        retry = Retry(
            max=len(defaults.COMMAND_RETRY_INTERVALS),
            interval=list(defaults.COMMAND_RETRY_INTERVALS),
        )
        self.commands.enqueue(func, call_id, *args, job_id=name, retry=retry, **_KEEP)

"""Commands on calls: place, stop, DTMF, transfer. Used by the HTTP API and TelephonyClient.

A command checks the call's state against the machine, records what was asked on the call, and
enqueues the job that talks to Daily. Nothing here talks to Daily or knows about HTTP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import redis

from telephony import defaults, machine, record
from telephony.config import Settings
from telephony.dispatch import DTMF_JOB, TRANSFER_JOB, Dispatch, start_stale_after
from telephony.store import CallStore, Change, Outcome
from telephony.validation import CallRequest


class CommandError(Exception):
    """A command that cannot be carried out; ``status`` is the HTTP answer it maps to."""

    status = 400


class CallNotFound(CommandError):
    status = 404


class CallConflict(CommandError):
    """The call's state does not allow this, or the id / Idempotency-Key is taken."""

    status = 409


def _digest(request: CallRequest) -> str:
    """What "the same body" means for an Idempotency-Key: the validated request, canonical."""
    canonical = json.dumps(dataclasses.asdict(request), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Calls:
    def __init__(self, client: redis.Redis, settings: Settings, store: CallStore | None = None):
        self.redis: Any = client
        self.settings = settings
        self.store = store or CallStore(client, settings)
        self.dispatch = Dispatch(client, settings, self.store)

    # --- placing ---------------------------------------------------------------------------

    def place(
        self, request: CallRequest, idempotency_key: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Create the call and queue its start; ``(call, created)``.

        With an ``Idempotency-Key``, the same key and body return the first call (``created``
        False); the same key with another body is a :class:`CallConflict`.
        """
        call_id = request.call_id or str(uuid.uuid4())
        if idempotency_key is None:
            return self._create(request, call_id, None)
        existing = self._claim_key(idempotency_key, _digest(request), call_id)
        if existing is not None:
            if self._stranded(existing):
                self._start(existing["id"])
            return existing, False
        try:
            return self._create(request, call_id, idempotency_key)
        except Exception:
            # The key must not block retries for a day because this attempt failed, unless the
            # call exists after all: then a retry must find it, not place a second call.
            with contextlib.suppress(redis.RedisError):
                if not self.redis.exists(self.store.keys.call(call_id)):
                    self.redis.delete(self.store.keys.idempotency(idempotency_key))
            raise

    def _stranded(self, call: dict[str, Any]) -> bool:
        """A call whose first request died between creating it and queueing its start."""
        found = self.store.fields(call["id"], "state", "start_job", "created_at")
        if found["state"] != "queued" or found["start_job"] or not found["created_at"]:
            return False
        created = datetime.fromisoformat(found["created_at"])
        age = (datetime.now(UTC) - created).total_seconds()
        return age > defaults.STRANDED_AFTER  # younger: its first request is still at work

    def _create(
        self, request: CallRequest, call_id: str, idempotency_key: str | None
    ) -> tuple[dict[str, Any], bool]:
        """Create the call, queue its first start and arm its watchdog in ONE transaction: a
        crash can never leave a call queued with no job and nothing watching it."""
        change = Change(
            trigger="queue",
            event="call.queued",
            source="api",
            call_id=call_id,
            create=record.values(
                kind="dialout",
                room=request.room,
                destination=request.destination,
                options=request.dialout,
                metadata=request.metadata,
                ring_timeout_sec=request.ring_timeout,
                max_duration_sec=request.max_duration,
                attempts=0,
            ),
            mode="new",
        )
        taken = bool(self.redis.exists(self.store.keys.call(call_id)))
        if not taken:  # checked first, so a refused id queues nothing
            pipe = self.dispatch.transaction()
            self.store.apply_on(pipe, change)
            self._queue_first_start(call_id, pipe)
            # Lost a race for the id: the start queued with it skips (the call already made
            # its attempts), and the existing call's watchdog is merely re-armed.
            taken = Outcome.parse(pipe.execute()[0]).status == "exists"
        if taken:
            if idempotency_key is not None:
                self.redis.delete(self.store.keys.idempotency(idempotency_key))
            raise CallConflict(f"a call with id {call_id!r} already exists")
        call = self.store.get(call_id)
        assert call is not None
        return call, True

    def _queue_first_start(self, call_id: str, pipe: Any, replaces: str | None = None) -> None:
        self.dispatch.enqueue_start(call_id, attempt=1, pipeline=pipe)
        due = time.time() + start_stale_after(self.settings)
        self.dispatch.schedule_watchdog(call_id, due, pipe, replaces=replaces)

    def _start(self, call_id: str) -> None:
        """Queue the first start of a stranded call, with its watchdog, in one transaction."""
        pipe = self.dispatch.transaction()
        old = self.store.fields(call_id, "watch_job")["watch_job"]
        self._queue_first_start(call_id, pipe, replaces=old)
        pipe.execute()

    def _claim_key(self, key: str, digest: str, call_id: str) -> dict[str, Any] | None:
        """Claim the key for ``call_id``; the first call's record if it was claimed before."""
        name = self.store.keys.idempotency(key)
        value = json.dumps({"digest": digest, "callId": call_id})
        if self.redis.set(name, value, nx=True, ex=defaults.IDEMPOTENCY_TTL):
            return None
        deadline = time.monotonic() + 2.0
        while True:
            raw = self.redis.get(name)
            if raw is None:  # expired between the two commands: claim it again
                return self._claim_key(key, digest, call_id)
            first = json.loads(raw)
            if first["digest"] != digest:
                raise CallConflict("Idempotency-Key was already used with a different body")
            call = self.store.get(first["callId"])
            if call is not None:
                return call
            if time.monotonic() > deadline:
                # Claimed long ago with no call behind it: that request died before creating
                # anything. Take the key over (compare-and-set), unless someone else just did.
                if self._take_over(name, raw, value):
                    return None
                raise CallConflict("a request with this Idempotency-Key is still in progress")
            time.sleep(0.01)

    def _take_over(self, name: str, seen: bytes, value: str) -> bool:
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(name)
                if pipe.get(name) != seen:
                    return False
                pipe.multi()
                pipe.set(name, value, ex=defaults.IDEMPOTENCY_TTL)
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    # --- commands on a call ----------------------------------------------------------------

    def _require(self, call_id: str) -> dict[str, Any]:
        call = self.store.get(call_id, history=False)
        if call is None:
            raise CallNotFound(f"no call {call_id!r}")
        return call

    @staticmethod
    def _dialout_only(call: dict[str, Any], what: str) -> None:
        """Daily's stop, DTMF and transfer endpoints act on dial-outs; a dial-in session is
        not ours to hang up through them (a 404 there would be recorded as a false stop)."""
        if call.get("kind") == "dialin":
            raise CallConflict(f"cannot {what} a dial-in session through the dial-out API")

    def stop(self, call_id: str) -> dict[str, Any]:
        """Hang up, or cancel a call not yet started. Idempotent: a finished call is left as is."""
        call = self._require(call_id)
        state = call["state"]
        if state in machine.FINAL:
            return call
        self._dialout_only(call, "stop")
        if state == "queued":
            outcome = self.store.apply(
                Change(
                    trigger="stop",
                    event="call.cancelled",
                    source="api",
                    call_id=call_id,
                    fields=record.values(reason="cancelled", stop_requested=1),
                )
            )
            if outcome.status == "applied":
                return self._require(call_id)
        self.store.mark_default(call_id, "stop_reason", "stopped")
        self.store.apply(
            Change(
                trigger="note",
                event="call.stop_requested",
                source="api",
                call_id=call_id,
                fields=record.values(stop_requested=1),
            )
        )
        self.dispatch.enqueue_stop(call_id)
        return {**call, **record.values(stop_requested=1)}  # as when the stop was queued

    def _live_command(self, call_id: str, trigger: str, what: str) -> dict[str, Any]:
        call = self._require(call_id)
        self._dialout_only(call, what)
        if not machine.plan(trigger).allows(call["state"]):
            raise CallConflict(f"cannot {what} a call that is {call['state']}")
        if not self.store.fields(call_id, "session_id")["session_id"]:
            raise CallConflict(f"cannot {what} before Daily has given the call a session")
        return call

    def send_dtmf(self, call_id: str, dtmf: dict[str, Any]) -> dict[str, Any]:
        call = self._live_command(call_id, "send_dtmf", "send DTMF to")
        self.dispatch.enqueue_command(DTMF_JOB, "dtmf", call_id, dtmf)
        return call

    def transfer(self, call_id: str, transfer: dict[str, Any]) -> dict[str, Any]:
        call = self._live_command(call_id, "transfer", "transfer")
        self.dispatch.enqueue_command(TRANSFER_JOB, "transfer", call_id, transfer)
        return call

"""Calls in Redis: the one place state changes are committed.

Every change goes through :meth:`CallStore.apply`, which runs ``apply.lua`` (registered once,
called by SHA): one round trip per event for de-duplication, compare-and-set against the
machine's moves, history, the durable feed and pub/sub.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Literal

import redis
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from telephony import defaults, machine, record
from telephony.config import ConfigError, Settings
from telephony.keys import Keys
from telephony.reconnect import patient_options

#: What became of a change; ``spooled``: journalled while Redis was away, applied later.
Status = Literal["applied", "ignored", "duplicate", "held", "exists", "orphan", "spooled"]
log = logging.getLogger(__name__)

_SCRIPT = resources.files("telephony").joinpath("apply.lua").read_text()


def connect(settings: Settings, who: str, patient: bool = False, **options: Any) -> Any:
    """The Redis client of one process (``redis.Redis``; typed ``Any``: redis-py's results
    are unions of every RESP shape). ``ConfigError`` names the variable when it is unset.

    ``patient``: the worker side, which rides out a Redis outage of about half a minute
    (:mod:`telephony.reconnect`); otherwise a command fails at once when Redis is away."""
    if not settings.redis_url:
        raise ConfigError(
            f"REDIS_URL is not set: {who} needs the service's Redis "
            "(only `telephony demo` starts its own)"
        )
    if patient:
        options = {**patient_options(), **options}
    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, **options)


def iso_time(seconds: float) -> str:
    """A UNIX time as the API shows times: UTC, milliseconds, ``Z`` (the contract's form)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unix_time(text: Any) -> float | None:
    """The inverse of :func:`iso_time` (any ISO 8601 form, or UNIX seconds as text, as records
    written before times had one format hold); None when absent or unreadable."""
    if isinstance(text, bytes):
        text = text.decode()
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def now_iso() -> str:
    return iso_time(time.time())


@dataclass(frozen=True)
class Change:
    """One event to apply to one call: the domain's only way to touch a call's state."""

    trigger: str
    event: str
    source: str
    call_id: str = ""
    session_id: str = ""
    event_id: str = ""
    data: Any = None
    fields: dict[str, Any] = field(default_factory=dict)
    #: Fields of a new record, with ``mode``: ``new`` (must not exist) or ``upsert``.
    create: dict[str, Any] | None = None
    mode: Literal["", "new", "upsert"] = ""
    at: str = ""


@dataclass(frozen=True)
class Outcome:
    status: Status
    call_id: str
    from_state: str
    to_state: str
    seq: int

    @classmethod
    def parse(cls, raw: Any) -> Outcome:
        """The script's reply ``[status, call id, from, to, seq]``."""
        status, call_id, from_state, to_state, seq = raw
        return cls(status.decode(), call_id.decode(), from_state.decode(), to_state.decode(),
                   int(seq))  # fmt: skip

    @property
    def changed(self) -> bool:
        return self.status == "applied" and self.from_state != self.to_state


class CallStore:
    """Reads and commits calls; holds no call state in process memory."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        # redis-py's return types are unions of every RESP shape; results are bytes here.
        self.redis: Any = client
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._apply = client.register_script(_SCRIPT)
        keys = self.keys
        # RQ's registry of the main queue's scheduled jobs: where a call's watchdog waits, to
        # be deleted by the script when the call ends.
        scheduled = ScheduledJobRegistry.key_template.format(settings.queue_name)
        self._script_keys = [
            keys.seq, keys.feed, keys.metrics, keys.calls, keys.open, keys.live, scheduled,
        ]  # fmt: skip

    def apply(self, change: Change) -> Outcome:
        """Commit one change: one EVALSHA."""
        return Outcome.parse(self._apply(keys=self._script_keys, args=[self._args(change)]))

    def apply_on(self, pipeline: Any, change: Change) -> None:
        """Queue the change on ``pipeline`` (a transaction with other writes); its reply is
        that pipeline's, to read with :meth:`Outcome.parse`."""
        self._apply(keys=self._script_keys, args=[self._args(change)], client=pipeline)

    def _args(self, change: Change) -> str:
        """``apply.lua``'s one argument: the change as named fields (documented there)."""
        plan = machine.plan(change.trigger)
        named: dict[str, Any] = {
            "v": 1,
            "prefix": self.settings.key_prefix,
            "callId": change.call_id,
            "sessionId": change.session_id,
            "event": change.event,
            "eventId": change.event_id,
            "moves": plan.moves,
            "at": change.at or now_iso(),
            "source": change.source,
            "data": json.dumps(change.data, separators=(",", ":")),
            "fields": record.encode(change.fields),
            "mode": change.mode,
            "retention": self.settings.call_retention,
            "feedMaxlen": self.settings.feed_maxlen,
            "dedupeTtl": self.settings.dedupe_ttl,
            "pendingTtl": defaults.PENDING_TTL,
            "jobPrefix": Job.redis_job_namespace_prefix,
            "dedupeScan": defaults.DEDUPE_HISTORY_SCAN,
            "sessionTtl": defaults.SESSION_INDEX_TTL,
            "nowMs": int(time.time() * 1000),
        }
        at_ms = _ms_form(named["at"])
        if at_ms is not None:
            named["atMs"] = str(at_ms)
            feed = _feed_form(change.data, at_ms)
            if feed is not None:
                named["feed"] = feed
        if change.create is not None:  # fields left None are not recorded
            stored = record.encode(change.create).items()
            named["create"] = {name: value for name, value in stored if value is not None}
        return json.dumps(named, separators=(",", ":"))

    def get(
        self, call_id: str, history: bool = True, internal: bool = False
    ) -> dict[str, Any] | None:
        """The call in the contract's shape, with its history; one round trip.

        ``internal`` keeps the workers' bookkeeping fields (timers, the latest start job),
        which the jobs need and users never see.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.call(call_id))
        if history:
            pipe.lrange(self.keys.history(call_id), 0, -1)
            pipe.get(self.keys.domain)
        results = pipe.execute()
        if not results[0]:
            return None
        call = _decode(call_id, results[0], internal=internal)
        if history:
            call["history"] = _history(results[1], call, _text(results[2]))
        return call

    def load(self, call_id: str) -> record.CallRecord | None:
        """The call as the workers read it, bookkeeping included; one round trip."""
        raw = self.redis.hgetall(self.keys.call(call_id))
        return record.CallRecord.restore(raw, call_id) if raw else None

    def state(self, call_id: str) -> str | None:
        return self.fields(call_id, "state")["state"]  # type: ignore[no-any-return]

    def fields(self, call_id: str, *attributes: str) -> dict[str, Any]:
        """Some fields of the call by Python name, decoded (``None`` where not recorded)."""
        raw = self.redis.hmget(self.keys.call(call_id), record.stored_names(attributes))
        return record.decode_fields(attributes, raw)

    def open_calls(self, *attributes: str) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        """Calls not yet final (the open index) in batches of about ``SWEEP_BATCH``, each call
        with the fields ``attributes`` (Python names; ``None`` for a vanished record): one
        ``ZSCAN`` and one pipelined round trip per batch."""
        names = record.stored_names(attributes)
        cursor = 0
        while True:
            cursor, rows = self.redis.zscan(self.keys.open, cursor, count=defaults.SWEEP_BATCH)
            ids = [member.decode() for member, _ in rows]
            pipe = self.redis.pipeline(transaction=False)
            for call_id in ids:
                pipe.hmget(self.keys.call(call_id), names)
            replies = pipe.execute() if ids else []
            yield [
                (call_id, record.decode_fields(attributes, raw))
                for call_id, raw in zip(ids, replies, strict=True)
            ]
            if cursor == 0:
                return

    def mark(self, call_id: str, pipeline: Any = None, **values: Any) -> None:
        """Record bookkeeping that moves no state (the latest start job, the watchdog's due
        time, why a queued call waits, a requested stop's reason), by Python name, on
        ``pipeline`` if given: written with the transaction that makes it true."""
        client = pipeline if pipeline is not None else self.redis
        stored = record.encode(record.values(**values))
        gone = [name for name, value in stored.items() if value is None]
        if gone:
            client.hdel(self.keys.call(call_id), *gone)
        if len(gone) < len(stored):
            kept = {name: value for name, value in stored.items() if value is not None}
            client.hset(self.keys.call(call_id), mapping=kept)

    def mark_default(self, call_id: str, attribute: str, value: Any) -> bool:
        """Record a field unless it already is (the first reason asked for wins)."""
        name = record.BY_ATTRIBUTE[attribute].name
        stored = record.encode_value(name, value)
        return bool(self.redis.hsetnx(self.keys.call(call_id), name, stored))

    def page(
        self,
        *,
        state: str | None = None,
        room: str | None = None,
        limit: int = defaults.PAGE_DEFAULT,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Calls newest first; ``cursor`` is opaque (``score:id`` of the last one returned).

        Filters are applied while walking the index in pages, so a page is always full unless
        the index is exhausted; ids whose record has expired are pruned from the index.
        """
        keys = self.keys
        max_score: str = "+inf"
        after_id = ""
        if cursor:
            max_score, _, after_id = cursor.partition(":")
        found: list[dict[str, Any]] = []
        next_cursor: str | None = None
        batch = max(limit * 2, 50)
        while len(found) < limit:
            rows = self.redis.zrevrangebyscore(
                keys.calls, max_score, "-inf", start=0, num=batch + 1, withscores=True
            )
            # Counted before skipping the cursor's own id: a full fetch means more may follow.
            exhausted = len(rows) <= batch
            if after_id:
                ids = [r[0].decode() for r in rows]
                if after_id in ids:
                    rows = rows[ids.index(after_id) + 1 :]
            if not rows:
                break
            pipe = self.redis.pipeline(transaction=False)
            for member, _ in rows:
                pipe.hgetall(keys.call(member.decode()))
            records = pipe.execute()
            expired = []
            for (member, score), stored in zip(rows, records, strict=True):
                call_id = member.decode()
                max_score, after_id = str(int(score)), call_id
                if not stored:
                    expired.append(call_id)
                    continue
                call = _decode(call_id, stored)
                if (state and call["state"] != state) or (room and call["room"] != room):
                    continue
                found.append(call)
                if len(found) == limit:
                    next_cursor = f"{max_score}:{after_id}"
                    break
            if expired:
                self.redis.zrem(keys.calls, *expired)
            if exhausted:
                break
        return found, next_cursor

    def feed(self, after: int = 0, limit: int = defaults.PAGE_DEFAULT) -> list[dict[str, Any]]:
        """Recorded events with ``seq > after``, in order (``GET /v1/events``)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xrange(self.keys.feed, min=f"({after}-0", max="+", count=limit)
        pipe.get(self.keys.domain)
        rows, domain = pipe.execute()
        return [_feed_entry(entry_id, fields, _text(domain)) for entry_id, fields in rows]


def _decode(call_id: str, raw: dict[bytes, bytes], internal: bool = False) -> dict[str, Any]:
    """The call, or, for a record this version cannot read, the contract's fields with its id
    and ``unreadable`` saying why: one bad record never breaks a listing or a page."""
    try:
        call = record.decode(raw, internal=internal)
        call["id"] = call_id  # the key holds it (records before the compact form hold it too)
        return call
    except record.RecordError as exc:
        log.error("call %s: %s", call_id, exc)
        return {**record.decode({}), "id": call_id, "unreadable": str(exc)}


def _text(raw: bytes | None) -> str | None:
    return raw.decode() if raw is not None else None


def _history(raw: list[bytes], call: dict[str, Any], domain: str | None) -> list[dict[str, Any]]:
    """The call's history as recorded: each entry's ``from`` is the state the entry before
    left the call in (``new`` for the first), which the compact form does not repeat."""
    carried = {"sessionId": call.get("sessionId"), "callId": call.get("id"),
               "room": call.get("room"), "domain": domain,
               "destination": call.get("destination")}  # fmt: skip
    entries, state = [], "new"
    for item in raw:
        entry = _history_entry(item, carried, state)
        state = entry.get("to", state)
        entries.append(entry)
    return entries


def _history_entry(raw: bytes, carried: dict[str, Any], before: str) -> dict[str, Any]:
    """One history entry; entries written before the compact form (one JSON object each)
    read as they are."""
    try:
        found = json.loads(raw)
        if isinstance(found, dict):
            return found
        event_id, seq, event, from_, to, at, source, ignored, marks, data = found
    except (ValueError, RecursionError, TypeError):
        return {"unreadable": "history entry is not JSON"}
    at_ms = _ms(at)
    entry: dict[str, Any] = {
        "seq": seq, "event": event, "from": from_ or before, "to": to,
        "at": iso_time(at_ms / 1000) if at_ms is not None else at, "source": source,
    }  # fmt: skip
    if ignored:
        entry["ignored"] = True
    if event_id:
        entry["eventId"] = event_id
    entry["data"] = _restored(data, marks, carried, at_ms)
    return entry


def _ms(at: Any) -> int | None:
    """A stored time in ms (a number, or digits), else None (the time's own text)."""
    if type(at) is int:
        return at
    return int(at) if isinstance(at, str) and at.isdigit() else None


#: Fields of an event's data that feed and history entries leave out when the entry holds
#: the same value (``apply.lua``'s compact): the field, its mark, and where the value is on
#: read (the feed entry or the call, the Daily domain, the call's destination).
_CARRIED = (
    ("session_id", "s", "sessionId"), ("user_id", "u", "callId"), ("room", "r", "room"),
    ("domain_id", "d", "domain"), ("sessionId", "S", "sessionId"),
    ("destination", "D", "destination"),
)  # fmt: skip


def _ms_form(at: str) -> int | None:
    """``at`` in milliseconds, when ``at`` is exactly that time's ISO form (so the feed can
    keep the number and give back the same text)."""
    seconds = unix_time(at)
    if seconds is None:
        return None
    ms = round(seconds * 1000)
    return ms if iso_time(ms / 1000) == at else None


def _feed_form(data: Any, at_ms: int) -> dict[str, Any] | None:
    """The compact form of an event's data for its feed and history entries: without the
    fields an entry may carry (:data:`_CARRIED`; ``apply.lua`` puts back each whose value is
    not the entry's own) and without a ``timestamp`` the entry's time gives back exactly;
    ``None`` when there is nothing to take out."""
    if not isinstance(data, dict):
        return None
    compact = dict(data)
    taken = {}
    for name, _, _ in _CARRIED:
        value = compact.get(name)
        if isinstance(value, str) and value:
            taken[name] = compact.pop(name)
    stamp, kind = compact.get("timestamp"), ""
    if at_ms % 1000 == 0:
        if isinstance(stamp, str) and stamp == str(at_ms // 1000):
            kind = "t"
        elif type(stamp) is int and stamp == at_ms // 1000:
            kind = "T"
    if kind:
        del compact["timestamp"]
    if not taken and not kind:
        return None
    form: dict[str, Any] = {"d": json.dumps(compact, separators=(",", ":")), "s": taken}
    if kind:
        form["t"] = kind
    return form


def _feed_entry(entry_id: bytes, fields: dict[bytes, bytes], domain: str | None) -> dict[str, Any]:
    """A feed event as it was published; for one that cannot be read, its ``seq`` and
    ``unreadable`` (a reader must be able to go past it). Entries written before the compact
    form hold the published JSON whole (``m``)."""
    seq = int(entry_id.decode().partition("-")[0])
    try:
        if b"m" in fields:
            event: dict[str, Any] = json.loads(fields[b"m"])
            return event
        return _rebuilt(seq, {k.decode(): v.decode() for k, v in fields.items()}, domain)
    except (KeyError, ValueError, RecursionError):
        why = "feed entry is not JSON" if b"m" in fields else "feed entry is incomplete"
        return {"seq": seq, "unreadable": why}


def _rebuilt(seq: int, f: dict[str, str], domain: str | None) -> dict[str, Any]:
    """The published event from a compact feed entry (``apply.lua``'s feed_entry)."""
    at = f["a"]
    at_ms = int(at) if at.isdigit() else None
    event: dict[str, Any] = {
        "seq": seq, "callId": f["c"] or None, "sessionId": f["s"] or None,
        "room": f["r"] or None, "kind": f["k"] or None, "event": f["e"],
        "from": f["f"] or None, "to": f["t"] or None,
        "at": iso_time(at_ms / 1000) if at_ms is not None else at,
        "source": f["o"], "ignored": f["i"] == "1",
    }  # fmt: skip
    carried = {**event, "domain": domain}
    event["data"] = _restored(json.loads(f["d"]), f["x"], carried, at_ms)
    return event


def _restored(data: Any, marks: str, carried: dict[str, Any], at_ms: int | None) -> Any:
    """The event's data with what its feed or history entry carries put back (``marks``)."""
    if marks and isinstance(data, dict):
        for name, mark, source in _CARRIED:
            if mark in marks:
                data[name] = carried[source]
        if at_ms is not None and "t" in marks:
            data["timestamp"] = str(at_ms // 1000)
        elif at_ms is not None and "T" in marks:
            data["timestamp"] = at_ms // 1000
    return data

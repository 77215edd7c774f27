"""The call store against a real Redis: the Lua commit point, the feed, pub/sub, listings.

Property-based tests at the end: any delivery order of a dial-out's events ends where the
ordered sequence ends, never publishes a backward move and records each event once.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest
import redis
from conftest import DialOut, wait_for
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from telephony import defaults, machine, record
from telephony.config import Settings
from telephony.inbound import Receiver, to_change
from telephony.limiter import Slots
from telephony.machine import RANK
from telephony.store import CallStore, Change, Outcome

#: The message every subscriber and feed reader relies on (the contract's pub/sub section).
CONTRACT_KEYS = {"seq", "callId", "sessionId", "room", "kind", "event", "from", "to", "at", "data"}


def apply_all(store: CallStore, changes: Iterable[Change]) -> list[Outcome]:
    return [store.apply(change) for change in changes]


def history_ids(call: dict[str, Any]) -> list[str]:
    return [entry["eventId"] for entry in call["history"] if "eventId" in entry]


class Listener:
    """A pub/sub subscriber, built once Redis has confirmed every channel."""

    def __init__(self, client: Any, *channels: str) -> None:
        self.pubsub = client.pubsub()
        self.pubsub.subscribe(*channels)
        confirmed = 0
        deadline = time.monotonic() + 5
        while confirmed < len(channels):
            assert time.monotonic() < deadline, "subscription not confirmed"
            message = self.pubsub.get_message(timeout=0.1)
            if message and message["type"] == "subscribe":
                confirmed += 1

    def take(
        self, count: int, timeout: float = 5.0, settle: float = 0.05
    ) -> list[tuple[str, dict[str, Any]]]:
        """The next ``count`` messages as ``(channel, message)``; then none for ``settle`` s."""
        found: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            assert time.monotonic() < deadline, f"got {len(found)} of {count} messages"
            message = self.pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                found.append((message["channel"].decode(), json.loads(message["data"])))
        assert self.pubsub.get_message(timeout=settle) is None
        return found

    def close(self) -> None:
        self.pubsub.close()


# --- Create, de-duplicate, compare-and-set ----------------------------------------------------


def test_create_then_exists(call_store: CallStore, dialout: Any) -> None:
    call = dialout()
    first = call_store.apply(call.queue())
    assert (first.status, first.from_state, first.to_state) == ("applied", "new", "queued")
    assert first.changed and first.seq > 0
    again = call_store.apply(call.queue())
    assert (again.status, again.seq) == ("exists", 0)
    record = call_store.get(call.call_id)
    assert record is not None
    assert (record["state"], record["kind"], record["room"]) == ("queued", "dialout", "sales-1")
    assert record["createdAt"] == record["updatedAt"]
    assert [h["event"] for h in record["history"]] == ["call.queued"]
    assert call_store.get("no-such-call") is None


def test_duplicate_event_id_is_applied_once(call_store: CallStore, dialout: Any) -> None:
    call = dialout()
    apply_all(call_store, [call.queue(), call.dial()])
    connected = call.webhook("dialout.connected", "evt-1")
    statuses = [call_store.apply(connected).status for _ in range(3)]
    assert statuses == ["applied", "duplicate", "duplicate"]
    record = call_store.get(call.call_id)
    assert record is not None
    assert record["state"] == "connected"
    assert history_ids(record) == ["evt-1"]
    assert not call_store.redis.exists(call_store.keys.seen("evt-1"))  # the history has it


def test_duplicates_are_caught_on_a_call_longer_than_the_history_search(
    call_store: CallStore, dialout: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids recorded beyond the entries de-duplication searches are remembered by key: a
    duplicate of an early event and of a late one are both caught."""
    monkeypatch.setattr(defaults, "DEDUPE_HISTORY_SCAN", 4)
    call = dialout()
    apply_all(call_store, [call.queue(), call.dial()])
    warnings = [call.webhook("dialout.warning", f"evt-w{n}") for n in range(6)]
    assert {o.status for o in apply_all(call_store, warnings)} == {"applied"}
    assert [call_store.apply(w).status for w in warnings] == ["duplicate"] * 6
    seen = [n for n in range(6) if call_store.redis.exists(call_store.keys.seen(f"evt-w{n}"))]
    assert seen == [2, 3, 4, 5]  # entries 5 to 8 of the history; the first 4 are searched
    for key in (call_store.keys.seen("evt-w2"),):
        assert call_store.redis.ttl(key) == pytest.approx(call_store.settings.dedupe_ttl, abs=5)


def test_an_event_for_no_known_call_is_remembered_by_key(call_store: CallStore) -> None:
    """Held (its session unknown yet) or orphaned, an event's id has no history to live in."""
    held = DialOut().webhook("dialout.connected", "evt-held", matched=False)
    assert call_store.apply(held).status == "held"
    assert call_store.apply(held).status == "duplicate"
    assert call_store.redis.exists(call_store.keys.seen("evt-held"))


def test_backward_event_is_recorded_as_ignored(call_store: CallStore, dialout: Any) -> None:
    call = dialout()
    apply_all(call_store, [call.queue(), call.dial(), call.webhook("dialout.answered", "a")])
    before = call_store.get(call.call_id)
    outcome = call_store.apply(call.webhook("dialout.connected", "c"))
    assert (outcome.status, outcome.from_state, outcome.to_state) == (
        "ignored", "answered", "answered",
    )  # fmt: skip
    assert not outcome.changed
    after = call_store.get(call.call_id)
    assert before is not None and after is not None
    assert after["state"] == "answered"
    assert after["updatedAt"] == before["updatedAt"]
    last = after["history"][-1]
    assert (last["event"], last["from"], last["to"], last["ignored"]) == (
        "dialout.connected", "answered", "answered", True,
    )  # fmt: skip
    assert last["seq"] == outcome.seq


def test_final_state_is_kept(call_store: CallStore, dialout: Any) -> None:
    call = dialout()
    apply_all(call_store, [call.queue(), call.webhook("dialout.stopped", "s")])
    outcomes = apply_all(
        call_store,
        [call.dial(), call.accept(), call.webhook("dialout.answered", "a"),
         call.webhook("dialout.error", "e", error_msg="late")],
    )  # fmt: skip
    assert {o.status for o in outcomes} == {"ignored"}
    record = call_store.get(call.call_id)
    assert record is not None
    assert (record["state"], record["reason"], record["error"]) == ("stopped", "hangup", None)


# --- Events for a session that is not known yet ----------------------------------------------


def test_events_are_held_until_the_session_is_known(call_store: CallStore, dialout: Any) -> None:
    call = dialout()
    apply_all(call_store, [call.queue(), call.dial()])
    feed_before = call_store.feed(after=0, limit=500)
    held = [
        call.webhook("dialout.answered", "h-answered", matched=False),
        call.webhook("dialout.connected", "h-connected", matched=False),
        call.webhook("dialout.warning", "h-warning", matched=False),
        call.webhook("dialout.answered", "h-answered", matched=False),  # a duplicate
    ]
    assert [o.status for o in apply_all(call_store, held)] == ["held"] * 3 + ["duplicate"]
    assert call_store.state(call.call_id) == "dialing"
    assert call_store.feed(after=0, limit=500) == feed_before  # nothing recorded yet
    pending = call_store.keys.pending(call.session_id)
    assert call_store.redis.llen(pending) == 3  # the duplicate was not held twice
    assert call_store.redis.ttl(pending) == pytest.approx(defaults.PENDING_TTL, abs=5)

    accepted = call_store.apply(call.accept())
    assert (accepted.status, accepted.to_state) == ("applied", "ringing")
    record = call_store.get(call.call_id)
    assert record is not None
    # Applied in arrival order: answered first, so the later "connected" is a backward move.
    assert [(h["event"], h["to"], h.get("ignored", False)) for h in record["history"]] == [
        ("call.queued", "queued", False),
        ("call.dialing", "dialing", False),
        ("call.started", "ringing", False),
        ("dialout.answered", "answered", False),
        ("dialout.connected", "answered", True),
        ("dialout.warning", "answered", False),
    ]
    assert history_ids(record) == ["h-answered", "h-connected", "h-warning"]
    assert (record["state"], record["sessionId"]) == ("answered", call.session_id)
    assert call_store.redis.exists(pending) == 0
    # Once known, the session alone finds the call.
    late = call_store.apply(call.webhook("dialout.stopped", "h-stopped", matched=False))
    assert (late.status, late.call_id, late.to_state) == ("applied", call.call_id, "stopped")


def test_a_matched_webhook_also_releases_held_events(call_store: CallStore, dialout: Any) -> None:
    call = dialout()
    apply_all(call_store, [call.queue(), call.dial()])
    assert call_store.apply(call.webhook("dialout.warning", "w", matched=False)).status == "held"
    outcome = call_store.apply(call.webhook("dialout.connected", "c"))  # carries user_id
    assert (outcome.status, outcome.to_state) == ("applied", "connected")
    record = call_store.get(call.call_id)
    assert record is not None
    assert history_ids(record) == ["c", "w"]
    assert call_store.redis.exists(call_store.keys.pending(call.session_id)) == 0


def test_unknown_call_without_session_is_an_orphan_on_the_feed(
    call_store: CallStore, dialout: Any
) -> None:
    ready = to_change({"type": "dialin.ready", "id": "r-1",
                       "payload": {"room": "lobby", "sip_endpoint": "sip:x@y"}})  # fmt: skip
    assert ready is not None
    stranger = dialout().webhook("dialout.connected", "o-2")
    stranger = dataclasses.replace(stranger, session_id="")
    outcomes = apply_all(call_store, [ready, stranger])
    assert [o.status for o in outcomes] == ["orphan", "orphan"]
    feed = call_store.feed(after=0, limit=10)
    assert [m["seq"] for m in feed] == [o.seq for o in outcomes]
    assert feed[0]["callId"] is None and feed[1]["callId"] == stranger.call_id
    for message in feed:
        assert set(message) >= CONTRACT_KEYS
        assert (message["from"], message["to"], message["ignored"]) == (None, None, True)
    assert feed[0]["data"] == {"room": "lobby", "sip_endpoint": "sip:x@y"}
    assert call_store.redis.exists(call_store.keys.call(stranger.call_id)) == 0


# --- Pub/sub and the durable feed --------------------------------------------------------------


def test_subscribers_get_exactly_the_feed_in_order(
    call_store: CallStore, dialout: Any, redis_client: redis.Redis
) -> None:
    call = dialout()
    keys = call_store.keys
    listener = Listener(redis_client, keys.events_channel, keys.call_channel(call.call_id))
    try:
        orphan = to_change({"type": "dialin.ready", "id": "r", "payload": {"room": "x"}})
        assert orphan is not None
        apply_all(call_store, [
            call.queue(), call.dial(),
            call.webhook("dialout.connected", "c", matched=False),  # held: nothing published
            orphan,
            call.accept(),  # publishes the accept, then the held event
            call.webhook("dialout.connected", "c"),  # duplicate: nothing published
            call.webhook("dialout.connected", "c-late"),  # ignored: published
            call.webhook("dialout.answered", "a", tags=[]),
            call.webhook("dialout.stopped", "s"),
        ])  # fmt: skip
        feed = call_store.feed(after=0, limit=100)
        mine = [m for m in feed if m["callId"] == call.call_id]
        received = listener.take(len(feed) + len(mine))
    finally:
        listener.close()
    on_all = [m for channel, m in received if channel == keys.events_channel]
    on_call = [m for channel, m in received if channel == keys.call_channel(call.call_id)]
    assert on_all == feed
    assert on_call == mine
    assert [m["seq"] for m in feed] == sorted({m["seq"] for m in feed})
    assert [m["event"] for m in mine] == [
        "call.queued", "call.dialing", "call.started", "dialout.connected",
        "dialout.connected", "dialout.answered", "dialout.stopped",
    ]  # fmt: skip
    for message in mine:
        assert set(message) >= CONTRACT_KEYS
        assert (message["callId"], message["room"], message["kind"]) == (
            call.call_id, "sales-1", "dialout",
        )  # fmt: skip
    assert mine[0]["sessionId"] is None and mine[-1]["sessionId"] == call.session_id
    assert mine[4]["ignored"] is True and mine[4]["from"] == mine[4]["to"] == "connected"
    assert mine[5]["data"]["tags"] == []  # the raw payload, not re-encoded ([] stays a list)
    record = call_store.get(call.call_id)
    assert record is not None
    assert [h["seq"] for h in record["history"]] == [m["seq"] for m in mine]


def test_feed_paging_with_after(call_store: CallStore, dialout: Any) -> None:
    call = dialout()
    apply_all(call_store, [call.queue(), call.dial()])
    apply_all(call_store, [call.webhook("dialout.warning", f"w{n}") for n in range(23)])
    everything = call_store.feed(after=0, limit=500)
    assert len(everything) == 25
    pages, after = [], 0
    while page := call_store.feed(after=after, limit=7):
        assert all(m["seq"] > after for m in page)
        pages.append(page)
        after = page[-1]["seq"]
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    assert [m for p in pages for m in p] == everything
    seqs = [m["seq"] for m in everything]
    assert all(b > a for a, b in itertools.pairwise(seqs))
    assert call_store.feed(after=seqs[-1]) == []
    assert call_store.feed(after=seqs[10], limit=1) == [everything[11]]


def test_feed_is_trimmed_to_about_maxlen(
    settings: Settings, redis_client: redis.Redis, dialout: Any
) -> None:
    store = CallStore(redis_client, dataclasses.replace(settings, feed_maxlen=10))
    call = dialout()
    apply_all(store, [call.queue(), call.dial()])
    apply_all(store, [call.webhook("dialout.warning", f"w{n}") for n in range(400)])
    node = int(store.redis.config_get("stream-node-max-entries")["stream-node-max-entries"])
    length = redis_client.xlen(store.keys.feed)
    assert 10 <= length <= 10 + node  # "~": whole stream nodes are dropped, never too many
    tail = store.feed(after=0, limit=500)
    assert tail[-1]["event"] == "dialout.warning" and len(tail) == length
    record = store.get(call.call_id)
    assert record is not None and len(record["history"]) == 402  # history is not trimmed


# --- Retention and listings --------------------------------------------------------------------


def test_an_ended_call_keeps_none_of_the_workers_bookkeeping(
    call_store: CallStore, dialout: Any
) -> None:
    """The fields only workers read (timers, the latest start job, the stop asked for) are
    removed when the call ends; the reason it ended, and what the API shows, stay."""
    call = dialout()
    apply_all(call_store, [call.queue(), call.dial(), call.accept()])
    pipe = call_store.redis.pipeline()
    call_store.mark(call.call_id, pipe, watch_due=1, watch_job="w", start_job="s",
                    dialing_since="2024-01-01T00:00:00.000Z", stop_reason="stopped")  # fmt: skip
    pipe.execute()
    call_store.apply(call.webhook("dialout.stopped", f"s-{call.call_id}"))
    stored = {k.decode() for k in call_store.redis.hkeys(call_store.keys.call(call.call_id))}
    hidden = {name for name, field in record.FIELDS.items() if not field.shown}
    assert stored & (hidden | {"stopRequested", "stopReason"}) == set()
    assert {"state", "room", "reason", "sessionId"} <= stored
    assert (call_store.get(call.call_id) or {})["reason"] == "stopped"  # the stop asked for


def test_finished_calls_expire_and_live_ones_do_not(call_store: CallStore, dialout: Any) -> None:
    keys, r = call_store.keys, call_store.redis
    live, done = dialout(), dialout()
    for call in (live, done):
        apply_all(call_store, [call.queue(), call.dial(), call.accept(),
                               call.webhook("dialout.answered", f"a-{call.call_id}")])  # fmt: skip
    call_store.apply(done.webhook("dialout.stopped", f"s-{done.call_id}"))
    retention = call_store.settings.call_retention
    for key in (keys.call(done.call_id), keys.history(done.call_id)):
        assert r.ttl(key) == pytest.approx(retention, abs=5), key
    # The session index only as long as webhooks without the call's id can still come.
    session_ttl = min(retention, defaults.SESSION_INDEX_TTL)
    assert r.ttl(keys.session(done.session_id)) == pytest.approx(session_ttl, abs=5)
    for key in (keys.call(live.call_id), keys.history(live.call_id), keys.session(live.session_id)):
        assert r.ttl(key) == -1, key
    # A late event on the finished call is recorded and keeps the call's expiry.
    call_store.apply(done.webhook("dialout.warning", f"w-{done.call_id}"))
    assert r.ttl(keys.history(done.call_id)) == pytest.approx(retention, abs=5)


@pytest.mark.parametrize(
    ("trigger", "event"),
    [("stop", "dialout.stopped"), ("fail", "dialout.error"), ("stop", "call.reconciled")],
)
def test_a_call_that_ends_gives_back_its_room_leg_and_live_slot(
    call_store: CallStore, dialout: Any, trigger: str, event: str
) -> None:
    """However the call ends (Daily's webhook, the watchdog, reconciliation: every end is a
    change through the store), its room's leg and its live-call slot are free at once."""
    keys, r = call_store.keys, call_store.redis
    call, other = dialout(room="legs"), dialout(room="legs")
    slots = Slots(r, keys, room_leg_limit=5, cap=10)
    for one in (call, other):
        apply_all(call_store, [one.queue(), one.dial()])
        assert slots.take(one.call_id, "legs") == "taken"
    call_store.apply(Change(trigger=trigger, event=event, source="worker", call_id=call.call_id))
    assert r.zrange(keys.room_legs("legs"), 0, -1) == [other.call_id.encode()]
    assert r.zrange(keys.live, 0, -1) == [other.call_id.encode()]


def _create_calls(store: CallStore, dialout: Any, rooms: list[str]) -> list[str]:
    """One call per room, each created in its own millisecond (listings sort by it)."""
    ids = []
    for room in rooms:
        call = dialout(room=room)
        stamp = int(time.time() * 1000)
        while int(time.time() * 1000) == stamp:
            time.sleep(0.0002)
        store.apply(call.queue())
        ids.append(call.call_id)
    return ids


def test_page_is_newest_first_across_pages(call_store: CallStore, dialout: Any) -> None:
    ids = _create_calls(call_store, dialout, ["r"] * 12)
    seen: list[str] = []
    cursor = None
    while True:
        calls, cursor = call_store.page(limit=5, cursor=cursor)
        seen += [c["id"] for c in calls]
        if cursor is None:
            break
        assert len(calls) == 5
    assert seen == ids[::-1]


def test_page_filters_stay_full_across_a_long_index(call_store: CallStore, dialout: Any) -> None:
    """Rare matches spread over many more calls than one batch: every one is found."""
    rooms = ["rare" if n % 60 == 0 else "common" for n in range(181)]
    ids = _create_calls(call_store, dialout, rooms)
    rare = [call_id for call_id, room in zip(ids, rooms, strict=True) if room == "rare"]
    call_store.apply(dialout(call_id=rare[1]).dial())
    found: list[str] = []
    cursor = None
    for _ in range(10):
        calls, cursor = call_store.page(room="rare", limit=1, cursor=cursor)
        found += [c["id"] for c in calls]
        if cursor is None:
            break
    assert found == rare[::-1]
    dialing, cursor = call_store.page(state="dialing", limit=5)
    assert ([c["id"] for c in dialing], cursor) == ([rare[1]], None)
    both, _ = call_store.page(state="queued", room="rare", limit=5)
    assert [c["id"] for c in both] == [rare[3], rare[2], rare[0]]


def test_page_prunes_expired_calls(
    settings: Settings, redis_client: redis.Redis, dialout: Any
) -> None:
    store = CallStore(redis_client, dataclasses.replace(settings, call_retention=1))
    kept, gone = _create_calls(store, dialout, ["r", "r"])
    store.apply(dialout(call_id=gone).webhook("dialout.stopped", f"s-{gone}"))
    wait_for(lambda: redis_client.exists(store.keys.call(gone)) == 0, timeout=5)
    assert redis_client.zscore(store.keys.calls, gone) is not None  # still indexed
    calls, cursor = store.page(limit=10)
    assert ([c["id"] for c in calls], cursor) == ([kept], None)
    assert redis_client.zscore(store.keys.calls, gone) is None
    assert redis_client.zscore(store.keys.calls, kept) is not None


# --- Fields set by moves --------------------------------------------------------------------


def test_stop_after_a_transfer_is_transferred(call_store: CallStore, dialout: Any) -> None:
    call, plain = dialout(), dialout()
    for one in (call, plain):
        apply_all(call_store, [one.queue(), one.dial(), one.accept(),
                               one.webhook("dialout.answered", f"a-{one.call_id}")])  # fmt: skip
    transfer = call.webhook("calltransfer.started", "t", to_endpoint="+15550100001")
    assert call_store.apply(transfer).status == "applied"
    call_store.apply(call.webhook("dialout.stopped", "s"))
    call_store.apply(plain.webhook("dialout.stopped", f"s-{plain.call_id}"))
    record, other = call_store.get(call.call_id), call_store.get(plain.call_id)
    assert record is not None and other is not None
    assert (record["state"], record["reason"], record["transferredTo"]) == (
        "stopped", "transferred", "+15550100001",
    )  # fmt: skip
    assert (other["state"], other["reason"]) == ("stopped", "hangup")
    assert record["endedAt"] == record["history"][-1]["at"]


def test_a_transfer_before_connect_is_ignored(call_store: CallStore, dialout: Any) -> None:
    call = dialout()
    apply_all(call_store, [call.queue(), call.dial(), call.accept()])  # ringing, session known
    outcome = call_store.apply(call.webhook("calltransfer.started", "t", to_endpoint="x"))
    assert outcome.status == "ignored"
    record = call_store.get(call.call_id)
    assert record is not None and "transferredTo" not in record


def test_fail_sets_error(call_store: CallStore, dialout: Any) -> None:
    call = dialout()
    apply_all(call_store, [call.queue(), call.dial(), call.accept()])
    outcome = call_store.apply(call.webhook("dialout.error", "e", error_msg="busy here"))
    assert (outcome.status, outcome.to_state) == ("applied", "error")
    record = call_store.get(call.call_id)
    assert record is not None
    assert (record["state"], record["error"], record["reason"]) == ("error", "busy here", "error")
    assert record["attempts"] == 1


def test_metrics_count_outcomes_and_states_entered(call_store: CallStore, dialout: Any) -> None:
    call = dialout()
    orphan = to_change({"type": "dialin.ready", "id": "r", "payload": {}})
    assert orphan is not None
    apply_all(call_store, [
        call.queue(), call.queue(), call.dial(),
        call.webhook("dialout.warning", "w", matched=False),  # held, then applied on accept
        call.accept(),
        call.webhook("dialout.connected", "c"), call.webhook("dialout.connected", "c"),
        call.webhook("dialout.answered", "a"), call.webhook("dialout.connected", "c2"),
        call.webhook("dialout.stopped", "s"), orphan,
    ])  # fmt: skip
    raw = call_store.redis.hgetall(call_store.keys.metrics)
    counters = {k.decode(): int(v) for k, v in raw.items()}
    assert counters == {
        "events_applied": 7, "events_exists": 1, "events_held": 1, "events_duplicate": 1,
        "events_ignored": 1, "events_orphan": 1,
        "entered_queued": 1, "entered_dialing": 1, "entered_ringing": 1,
        "entered_connected": 1, "entered_answered": 1, "entered_stopped": 1,
    }  # fmt: skip


# --- One round trip per webhook ------------------------------------------------------------------


def _command_calls(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): row["calls"] for name, row in stats.items()})


def test_one_redis_round_trip_per_webhook(
    redis_url: str, settings: Settings, call_store: CallStore, dialout: Any, sign_webhook: Any
) -> None:
    """Counted by Redis itself: ``INFO commandstats`` for the EVALSHA calls, ``MONITOR`` for
    proof that the client sent nothing else (commands run inside the script are tagged)."""
    call = dialout()
    apply_all(call_store, [call.queue(), call.dial()])
    bodies = [call.envelope("dialout.connected", "c"), call.envelope("dialout.connected", "c")]
    bodies += [call.envelope("dialout.warning", f"w{n}", matched=n % 2 == 0) for n in range(20)]
    bodies += [call.envelope("dialout.answered", "a"), call.envelope("dialout.stopped", "s")]
    client = redis.Redis.from_url(redis_url)  # a fresh process's view: its own pool and store
    receiver = Receiver(CallStore(client, settings), settings)
    observer: Any = redis.Redis.from_url(redis_url)
    client.ping()  # connection set-up (HELLO, CLIENT SETINFO) is not a per-webhook cost
    preloaded = observer.script_exists(receiver.store._apply.sha)[0]
    sent: list[str] = []
    marker = f"end-{call.call_id}"

    def watch(ready: threading.Event) -> None:
        with observer.monitor() as monitor:
            ready.set()
            while (line := monitor.next_command())["command"] != f"ECHO {marker}":
                if line["client_type"] != "lua":
                    sent.append(line["command"].split(" ", 1)[0].upper())

    ready = threading.Event()
    watcher = threading.Thread(target=watch, args=(ready,), daemon=True)
    watcher.start()
    assert ready.wait(5)
    before = _command_calls(call_store.redis)
    statuses = [receiver.receive(body, **_signature(sign_webhook(body))) for body in bodies]
    after = _command_calls(call_store.redis)
    call_store.redis.echo(marker)
    watcher.join(timeout=5)
    client.close()
    observer.close()

    assert {o.status for o in statuses if o} == {"applied", "duplicate"}
    n = len(bodies)
    loads = 0 if preloaded else 1
    assert after["evalsha"] - before["evalsha"] == n + loads  # +1: the NOSCRIPT try
    assert after["script"] - before["script"] == loads
    expected = {"INFO": 2, "EVALSHA": n + loads, "SCRIPT": loads}  # INFO: the two snapshots
    assert Counter(sent) == Counter({name: count for name, count in expected.items() if count})


def _signature(headers: dict[str, str]) -> dict[str, str]:
    return {"timestamp": headers["X-Webhook-Timestamp"], "sig": headers["X-Webhook-Signature"]}


# --- Properties: any delivery order ends where the ordered sequence ends ------------------------


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[tuple[str, bool]], list[int | str]]:
    """A valid dial-out's webhooks ``(type, names the call)`` in order, and an arrival order:
    a permutation of the worker's ``dial``/``accept`` and every webhook index, duplicates
    included (by index)."""
    kinds = ["dialout.connected"]
    kinds += ["dialout.warning"] * draw(st.integers(0, 2))
    if draw(st.booleans()):
        kinds.append("dialout.answered")
    kinds.append(draw(st.sampled_from(["dialout.stopped", "dialout.error"])))
    matched = draw(st.lists(st.booleans(), min_size=len(kinds), max_size=len(kinds)))
    indexes = list(range(len(kinds)))
    dups = draw(st.lists(st.sampled_from(indexes), max_size=4))
    arrival: list[int | str] = draw(st.permutations(["dial", "accept", *indexes, *dups]))
    return list(zip(kinds, matched, strict=True)), arrival


def _final(store: CallStore, call_id: str) -> tuple[Any, ...]:
    record = store.get(call_id, history=False)
    assert record is not None
    return record["state"], record["reason"], record["error"]


def test_any_delivery_order_ends_in_the_ordered_final_state(
    call_store: CallStore, dialout: Any, redis_client: redis.Redis
) -> None:
    listener = Listener(redis_client, call_store.keys.events_channel)

    @hypothesis_settings(
        max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(deliveries())
    def check(case: tuple[list[tuple[str, bool]], list[int | str]]) -> None:
        webhooks, arrival = case
        reference, call = dialout(), dialout()

        def changes_of(one: Any) -> dict[int | str, Change]:
            found: dict[int | str, Change] = {"dial": one.dial(), "accept": one.accept()}
            for index, (kind, matched) in enumerate(webhooks):
                found[index] = one.webhook(kind, f"{one.call_id}-{index}", matched, error_msg="x")
            return found

        ordered = changes_of(reference)
        keys = ["dial", "accept", *range(len(webhooks))]
        apply_all(call_store, [reference.queue(), *(ordered[key] for key in keys)])
        shuffled = changes_of(call)
        apply_all(call_store, [call.queue(), *(shuffled[key] for key in arrival)])

        final = _final(call_store, call.call_id)
        assert final == _final(call_store, reference.call_id)
        assert final[0] in ("stopped", "error")
        record, expected = call_store.get(call.call_id), call_store.get(reference.call_id)
        assert record is not None and expected is not None
        assert record["sessionId"] == call.session_id
        assert call_store.redis.exists(call_store.keys.pending(call.session_id)) == 0
        ids = history_ids(record)
        assert sorted(ids) == sorted(f"{call.call_id}-{i}" for i in range(len(webhooks)))
        count = len(record["history"]) + len(expected["history"])
        published = [m for _, m in listener.take(count, settle=0)]  # strays: next take
        assert {m["callId"] for m in published} == {call.call_id, reference.call_id}
        for message in published:
            assert RANK[message["to"]] >= RANK[message["from"]], message
            if message["ignored"]:
                assert message["to"] == message["from"]
        seqs = [m["seq"] for m in published]
        assert seqs == sorted(set(seqs))

    try:
        check()
    finally:
        listener.close()


def test_a_held_event_of_the_earlier_positional_format_is_still_applied(
    call_store: CallStore, dialout: Any
) -> None:
    """Events held before a deploy were stored as apply.lua's positional argument list; the
    script that drains them after the deploy reads that form too."""
    call = dialout()
    apply_all(call_store, [call.queue(), call.dial()])
    old = [call.call_id, call.session_id, "dialout.answered", "h-old",
           machine.plan("answer").moves_json, "2026-12-07T10:00:00.000Z", "webhook",
           '{"session_id":"s"}', '{"answeredAt":"2026-12-07T10:00:00.000Z"}', "", ""]  # fmt: skip
    call_store.redis.rpush(call_store.keys.pending(call.session_id), json.dumps(old))
    current = call.webhook("dialout.connected", "h-new", matched=False)
    assert call_store.apply(current).status == "held"  # held in the named, versioned form
    [stored] = call_store.redis.lrange(call_store.keys.pending(call.session_id), 1, 1)
    assert json.loads(stored)["v"] == 1 and json.loads(stored)["event"] == "dialout.connected"

    call_store.apply(call.accept())
    record = call_store.get(call.call_id)
    assert record is not None and record["state"] == "answered"
    assert record["answeredAt"] == "2026-12-07T10:00:00.000Z"
    assert history_ids(record) == ["h-old", "h-new"]
    assert call_store.apply(call.webhook("dialout.answered", "h-old")).status == "duplicate"


# --- what is read back is what was published ----------------------------------------------------


def test_the_feed_and_history_read_back_exactly_what_was_published(
    call_store: CallStore, dialout: Any
) -> None:
    """However the feed and the history are stored, every event reads back (``GET
    /v1/events``, a call's history) exactly as pub/sub carried it when it was recorded: for
    usual webhooks and for the odd ones (another session, another room or Daily domain, a
    numeric or fractional timestamp, no user id, no call at all, a dial-in)."""
    from telephony.inbound import to_change

    pubsub = call_store.redis.pubsub()
    pubsub.subscribe(call_store.keys.events_channel)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    first = int(call_store.redis.get(call_store.keys.seq) or 0)
    call, other = dialout(room="room-a"), dialout()
    changes = [call.queue(), call.dial(), call.accept(), other.queue()]
    webhooks = [
        call.webhook("dialout.connected", "w-1", domain_id="dom-1", destination="+15550100000"),
        call.webhook("dialout.answered", "w-2", timestamp=1728023427, domain_id="dom-1"),
        call.webhook("dialout.warning", "w-3", session_id="another-session", domain_id="dom-2"),
        call.webhook("dialout.warning", "w-4", room="room-b", destination="+15550100999"),
        call.webhook("dialout.warning", "w-5", timestamp="1728023428.25"),
        call.webhook("dialout.warning", "w-6", matched=False, extra={"a": [], "b": {}}),
        call.webhook("dialout.warning", "w-6"),  # a duplicate: not recorded
        call.webhook("dialout.stopped", "w-7"),
        other.webhook("dialout.warning", "w-8", timestamp="soon"),
    ]
    orphan = to_change({"type": "dialin.ready", "id": "w-9", "payload": {"room": "lobby"}})
    dialin = to_change(
        {
            "type": "dialin.connected",
            "id": "w-10",
            "payload": {
                "session_id": "in-1",
                "room": "r",
                "sip_from": "sip:a@b",
                "timestamp": "1728023429",
            },
        }
    )
    assert orphan is not None and dialin is not None
    notes = [
        Change("note", "call.noted", "worker", call.call_id, data={"sessionId": sid, "n": 1})
        for sid in (call.session_id, "not-its-session")
    ]
    apply_all(call_store, [*changes, *webhooks, orphan, dialin, *notes])

    published = []
    while (message := pubsub.get_message(timeout=2)) is not None:
        published.append(json.loads(message["data"]))
    pubsub.close()
    assert len(published) == len(changes) + len(webhooks) - 1 + 2 + len(notes)
    assert call_store.feed(after=first, limit=100) == published
    for call_id in {event["callId"] for event in published if event["callId"]}:
        found = call_store.get(call_id)
        assert found is not None
        mine = [e for e in published if e["callId"] == call_id]
        history = [{k: v for k, v in e.items() if k != "eventId"} for e in found["history"]]
        assert history == [history_entry(e) for e in mine]
    assert history_ids(call_store.get(call.call_id) or {}) == [f"w-{n}" for n in range(1, 8)]


def history_entry(event: dict[str, Any]) -> dict[str, Any]:
    """A published event as its call's history shows it."""
    entry = {k: event[k] for k in ("seq", "event", "from", "to", "at", "source", "data")}
    if event["ignored"]:
        entry["ignored"] = True
    return entry

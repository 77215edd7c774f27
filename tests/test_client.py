"""``TelephonyClient`` on real Redis: commands go straight into the store and the queue, and
events come back through pub/sub and the durable feed. No workers: jobs stay queued."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rq import Queue

from telephony import TelephonyClient
from telephony.client import Call, CallConflict, CallNotFound, ValidationError
from telephony.config import ConfigError, Settings
from telephony.dispatch import DTMF_JOB, START_JOB, TRANSFER_JOB
from telephony.store import CallStore, Change

PHONE = "+15550100000"
SIP = "sip:agent@example.com"


@pytest.fixture
def client(settings: Settings) -> Iterator[TelephonyClient]:
    with TelephonyClient(settings=settings) as made:
        yield made


def queued_jobs(queue: Queue) -> list[tuple[str | None, list[object]]]:
    return [(job.func_name, list(job.args)) for job in queue.get_jobs()]


def note(store: CallStore, call_id: str, event: str) -> None:
    store.apply(Change(trigger="note", event=event, source="test", call_id=call_id))


# --- construction -------------------------------------------------------------------------------


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, queue: Queue
) -> None:
    monkeypatch.setenv("REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("TELEPHONY_KEY_PREFIX", settings.key_prefix)
    monkeypatch.setenv("TELEPHONY_QUEUE", settings.queue_name)
    with TelephonyClient() as from_env:
        call = from_env.dial("sales-1", phone_number=PHONE)
    with TelephonyClient(settings=settings) as explicit:
        assert explicit.get(call.id) == call
    assert queued_jobs(queue) == [(START_JOB, [call.id, 1])]


def test_redis_url_overrides_settings_and_is_required(settings: Settings) -> None:
    broken = dataclasses.replace(settings, redis_url="redis://127.0.0.1:1")
    with TelephonyClient(settings.redis_url, settings=broken) as client:
        assert client.list().calls == []
    with pytest.raises(ConfigError, match="REDIS_URL"):
        TelephonyClient(settings=dataclasses.replace(settings, redis_url=None))


# --- dialling -----------------------------------------------------------------------------------


def test_dial_queues_the_call_and_its_start(client: TelephonyClient, queue: Queue) -> None:
    call = client.dial(
        "sales-1",
        sip_uri=SIP,
        display_name="Agent",
        video=True,
        video_settings={"width": 640, "video_bitrate": 500},
        codecs={"audio": ("OPUS",), "video": ["VP8"]},
        ring_timeout_sec=20,
        metadata={"ticket": 7},
    )
    assert isinstance(call, Call)
    assert (call.state, call.room, call.destination, call.kind) == (
        "queued",
        "sales-1",
        SIP,
        "dialout",
    )
    assert call.extra["options"] == {
        "sipUri": SIP,
        "displayName": "Agent",
        "video": True,
        "videoSettings": {"width": 640, "videoBitrate": 500},
        "codecs": {"audio": ["OPUS"], "video": ["VP8"]},
    }
    assert call.extra["ringTimeoutSec"] == 20
    assert call.metadata == {"ticket": 7}
    assert [entry["event"] for entry in call.history] == ["call.queued"]
    assert queued_jobs(queue) == [(START_JOB, [call.id, 1])]
    assert client.get(call.id) == call
    assert client.store.get(call.id) == call.to_dict()


@pytest.mark.parametrize(
    ("kwargs", "fields"),
    [
        ({}, {"phone_number", "sip_uri"}),
        ({"phone_number": PHONE, "sip_uri": SIP}, {"phone_number", "sip_uri"}),
        ({"phone_number": "555"}, {"phone_number"}),
        ({"sip_uri": SIP, "video": True, "video_settings": {"fps": 99}}, {"video_settings.fps"}),
        ({"sip_uri": SIP, "codecs": {"audio": ["opus"]}}, {"codecs.audio[0]"}),
        ({"phone_number": PHONE, "user_id": "has space"}, {"user_id"}),
        ({"phone_number": PHONE, "ring_timeout_sec": 0}, {"ring_timeout_sec"}),
        ({"phone_number": PHONE, "idempotency_key": "a b"}, {"idempotency_key"}),
        ({"phone_number": PHONE, "wait_before_extension_dial_sec": True},
         {"wait_before_extension_dial_sec"}),
        ({"phone_number": PHONE, "metadata": "\ud800"}, {"metadata"}),
        ({"phone_number": PHONE, "metadata": {"n": 2**53 + 1}}, {"metadata"}),
        ({"phone_number": PHONE, "display_name": "\udfff"}, {"display_name"}),
        ({"sip_uri": "sip:bob%0d%0aVia:evil@example.com"}, {"sip_uri"}),
        ({"sip_uri": "sip:bob@example.com?X-a=b%0d%0aX-Evil:1"}, {"sip_uri"}),
        ({"sip_uri": "sip:<bob>@example.com"}, {"sip_uri"}),
        ({"phone_number": PHONE, "display_name": "\u202eevil"}, {"display_name"}),
        ({"phone_number": PHONE, "display_name": "Bob\r\nVia: x"}, {"display_name"}),
    ],
)  # fmt: skip
def test_invalid_dial_names_fields_as_passed_and_queues_nothing(
    client: TelephonyClient, queue: Queue, kwargs: dict[str, object], fields: set[str]
) -> None:
    with pytest.raises(ValidationError) as raised:
        client.dial("sales-1", **kwargs)  # type: ignore[arg-type]
    assert set(raised.value.fields) == fields
    assert queue.count == 0
    assert client.list().calls == []


def test_metadata_comes_back_exactly_as_given(client: TelephonyClient) -> None:
    assert client.dial("r", phone_number=PHONE).metadata == {}
    for given in (None, "hello", "123", [], 2**53):
        call = client.dial("r", phone_number=PHONE, metadata=given)
        assert client.get(call.id).metadata == call.metadata == given
        assert type(client.get(call.id).metadata) is type(given)


def test_invalid_room_is_named(client: TelephonyClient) -> None:
    with pytest.raises(ValidationError) as raised:
        client.dial("no spaces allowed", phone_number=PHONE)
    assert set(raised.value.fields) == {"room"}


def test_idempotency_key_and_caller_chosen_id(client: TelephonyClient, queue: Queue) -> None:
    first = client.dial("r", phone_number=PHONE, idempotency_key="k-1")
    assert client.dial("r", phone_number=PHONE, idempotency_key="k-1").id == first.id
    with pytest.raises(CallConflict):
        client.dial("r", phone_number="+15550100009", idempotency_key="k-1")
    chosen = client.dial("r", phone_number=PHONE, user_id="order-9")
    assert chosen.id == "order-9"
    with pytest.raises(CallConflict):
        client.dial("r", phone_number=PHONE, user_id="order-9")
    assert queue.count == 2


# --- commands -----------------------------------------------------------------------------------


def test_commands_check_the_call_state(client: TelephonyClient, queue: Queue) -> None:
    call = client.dial("r", phone_number=PHONE)
    with pytest.raises(CallConflict):
        client.send_dtmf(call.id, "1")
    with pytest.raises(CallConflict):
        client.transfer(call.id, SIP)
    with pytest.raises(CallNotFound):
        client.stop("no-such-call")
    stopped = client.stop(call.id)
    assert (stopped.state, stopped.reason, stopped.final) == ("stopped", "cancelled", True)
    assert client.stop(call.id).state == "stopped"
    assert queue.count == 1  # only the start


def test_commands_on_an_answered_call_are_queued(
    client: TelephonyClient, commands: Queue, call_store: CallStore, answered: Any
) -> None:
    call_id = answered(call_store)
    assert client.send_dtmf(call_id, "9#", method="auto", digit_duration_ms=80).state == "answered"
    client.transfer(call_id, PHONE, extension="12", wait_before_extension_dial_sec=2)
    assert queued_jobs(commands) == [
        (DTMF_JOB, [call_id, {"tones": "9#", "method": "auto", "digitDurationMs": 80}]),
        (TRANSFER_JOB, [call_id, {"toEndPoint": PHONE, "extension": "12",
                                  "waitBeforeExtensionDialSec": 2}]),
    ]  # fmt: skip


def test_invalid_commands_name_fields_as_passed(
    client: TelephonyClient, queue: Queue, call_store: CallStore, answered: Any
) -> None:
    call_id = answered(call_store)
    with pytest.raises(ValidationError) as dtmf:
        client.send_dtmf(call_id, "1x", digit_duration_ms=10)
    assert set(dtmf.value.fields) == {"tones", "digit_duration_ms"}
    with pytest.raises(ValidationError) as transfer:
        client.transfer(call_id, SIP, refer=True, caller_id="x")
    assert set(transfer.value.fields) == {"caller_id"}
    with pytest.raises(ValidationError) as target:
        client.transfer(call_id, "agent")
    assert set(target.value.fields) == {"to_end_point"}
    assert queue.count == 0


# --- reading ------------------------------------------------------------------------------------


def test_list_filters_and_pages(client: TelephonyClient) -> None:
    ids = [client.dial("east" if i % 2 else "west", phone_number=PHONE).id for i in range(5)]
    client.stop(ids[0])
    assert [c.id for c in client.list(room="east").calls] == [ids[3], ids[1]]
    assert [c.id for c in client.list(state="stopped").calls] == [ids[0]]
    first = client.list(limit=3)
    assert [c.id for c in first.calls] == ids[:1:-1] and first.next is not None
    rest = client.list(limit=3, cursor=first.next)
    assert [c.id for c in rest.calls] == [ids[1], ids[0]] and rest.next is None
    assert all(c.history == () for c in first.calls)
    with pytest.raises(ValidationError) as raised:
        client.list(state="new", limit=0, room="a b", cursor="x")
    assert set(raised.value.fields) == {"state", "limit", "room", "cursor"}


def test_events_is_the_durable_feed(client: TelephonyClient) -> None:
    call = client.dial("r", phone_number=PHONE)
    client.stop(call.id)
    events = client.events()
    assert [(e["event"], e["from"], e["to"]) for e in events] == [
        ("call.queued", "new", "queued"),
        ("call.cancelled", "queued", "stopped"),
    ]
    assert client.events(after=events[0]["seq"]) == events[1:]
    with pytest.raises(ValidationError):
        client.events(limit=0)


# --- live events --------------------------------------------------------------------------------


def test_subscribe_receives_what_the_store_publishes(
    client: TelephonyClient, call_store: CallStore
) -> None:
    mine = client.dial("r", phone_number=PHONE)
    other = client.dial("r", phone_number=PHONE)
    with client.subscribe() as everything, client.subscribe(mine.id) as one:
        note(call_store, other.id, "note.other")
        note(call_store, mine.id, "note.mine")
        got = [everything.get(timeout=2), everything.get(timeout=2)]
        assert [(e["callId"], e["event"]) for e in got if e] == [
            (other.id, "note.other"),
            (mine.id, "note.mine"),
        ]
        only = one.get(timeout=2)
        assert only is not None and only["event"] == "note.mine"
        assert set(only) >= {"seq", "callId", "sessionId", "room", "kind", "from", "to", "at"}
        assert one.get(timeout=0.1) is None
    assert everything.closed


def test_subscription_iterates_until_closed(client: TelephonyClient) -> None:
    subscription = client.subscribe()
    closer = threading.Timer(0.2, subscription.close)
    closer.start()
    started = time.monotonic()
    assert list(subscription) == []
    assert time.monotonic() - started < 2
    closer.join()


def test_follow_catches_up_then_goes_live_without_gaps_or_repeats(
    client: TelephonyClient, call_store: CallStore
) -> None:
    first = client.dial("r", phone_number=PHONE)
    second = client.dial("r", phone_number=PHONE)
    everything = client.follow()
    one = client.follow(call_id=second.id)
    try:
        recorded = [next(everything)["callId"], next(everything)["callId"]]
        assert recorded == [first.id, second.id]
        assert next(one)["event"] == "call.queued"
        note(call_store, first.id, "note.live")
        note(call_store, second.id, "note.live-2")
        live = [next(everything), next(everything)]
        assert [(e["callId"], e["event"]) for e in live] == [
            (first.id, "note.live"),
            (second.id, "note.live-2"),
        ]
        mine = next(one)
        assert (mine["callId"], mine["event"]) == (second.id, "note.live-2")
        seqs = [e["seq"] for e in live]
        assert seqs == sorted(seqs)
    finally:
        everything.close()
        one.close()
    later = client.follow(after=live[0]["seq"])
    try:
        assert next(later)["seq"] == live[1]["seq"]
    finally:
        later.close()

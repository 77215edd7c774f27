"""The ``/v1`` HTTP API over real HTTP and real Redis (no workers: jobs stay in the queue).

Every refusal is checked for what it must *not* do: no job queued, no call created.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import API_TOKEN, DialOut
from hypothesis import strategies as st
from rq import Queue
from support.hostile import HOSTILE, HOSTILE_TEXT, NAME_REFUSED, SIP_ACCEPTED, SIP_REFUSED
from support.keys import redis_dump

from telephony.config import Secret, Settings
from telephony.dispatch import DTMF_JOB, START_JOB, STOP_JOB, TRANSFER_JOB
from telephony.serving import ServerThread
from telephony.store import CallStore

PHONE = "+15550100000"
SIP = "sip:agent@example.com"
UNKNOWN_ID = "call-unknown"


class Api:
    """``requests`` against one server, with the bearer token unless told otherwise."""

    def __init__(self, base: str, token: str | None = API_TOKEN) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        all_headers = {**self.headers, **(headers or {})}
        if data is None and body is not None:
            data = json.dumps(body)
            all_headers.setdefault("Content-Type", "application/json")
        return requests.post(self.base + path, data=data, headers=all_headers, timeout=10)

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(self.base + path, params=params, headers=self.headers, timeout=10)

    def dial(self, **body: Any) -> dict[str, Any]:
        response = self.post("/v1/calls", {"room": "sales-1", "phoneNumber": PHONE, **body})
        assert response.status_code == 202, response.text
        call: dict[str, Any] = response.json()
        return call


@pytest.fixture
def api(web: str) -> Api:
    return Api(web)


@pytest.fixture
def store(app: Any) -> CallStore:
    found: CallStore = app.extensions["telephony"].store
    return found


def jobs(queue: Queue) -> list[tuple[str, list[Any]]]:
    return [(job.func_name, list(job.args)) for job in queue.get_jobs()]


def assert_nothing_done(queue: Queue, store: CallStore, jobs_before: int = 0) -> None:
    assert queue.count == jobs_before
    assert store.redis.zcard(store.keys.calls) == (1 if jobs_before else 0)


def assert_refused(response: requests.Response, status: int, *fields: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) <= {"error", "info", "fields"}
    assert body["error"] and body["info"]
    for name in fields:
        assert name in body.get("fields", {}), (name, body)
    return body


def answered_call(store: CallStore) -> str:
    """A call moved to ``answered`` through the store, as its worker and webhooks would."""
    call = DialOut()
    for change in (call.queue(), call.dial(), call.accept()):
        store.apply(change)
    store.apply(call.webhook("dialout.connected", f"evt-c-{call.call_id}"))
    store.apply(call.webhook("dialout.answered", f"evt-a-{call.call_id}"))
    assert store.state(call.call_id) == "answered"
    return call.call_id


# --- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_TOKEN}"},
     {"Authorization": "Bearer"}],
    ids=["missing", "wrong", "other-scheme", "empty"],
)  # fmt: skip
def test_v1_needs_a_valid_token(
    web: str, queue: Queue, store: CallStore, headers: dict[str, str]
) -> None:
    for response in (
        requests.get(f"{web}/v1/calls", headers=headers, timeout=5),
        requests.post(f"{web}/v1/calls", json={"room": "r", "phoneNumber": PHONE},
                      headers=headers, timeout=5),
    ):  # fmt: skip
        body = assert_refused(response, 401)
        assert body["error"] == "authentication-error"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_nothing_done(queue, store)


@pytest.fixture
def rotating(settings: Settings) -> Iterator[str]:
    """The app with two tokens configured, as during a rotation."""
    from telephony.web import create_app

    rotated = dataclasses.replace(settings, api_tokens=(Secret("old-token"), Secret("new-token")))
    with ServerThread(create_app(rotated)) as server:
        yield server.url


def test_both_tokens_work_during_rotation(rotating: str) -> None:
    for token in ("old-token", "new-token"):
        assert Api(rotating, token).get("/v1/calls").status_code == 200
    assert Api(rotating, API_TOKEN).get("/v1/calls").status_code == 401


def test_no_token_configured_refuses_everything(settings: Settings) -> None:
    from telephony.web import create_app

    with ServerThread(create_app(dataclasses.replace(settings, api_tokens=()))) as server:
        response = Api(server.url, "").get("/v1/calls")
        assert "no API token" in assert_refused(response, 401)["info"]


# --- POST /v1/calls -----------------------------------------------------------------------------


def test_dial_queues_the_call_and_its_start(api: Api, queue: Queue) -> None:
    response = api.post(
        "/v1/calls",
        {"room": "sales-1", "phoneNumber": PHONE, "metadata": {"crm": [1, {"a": None}]},
         "ringTimeoutSec": 30, "displayName": "Sales"},
    )  # fmt: skip
    assert response.status_code == 202
    call = response.json()
    assert response.headers["Location"] == f"/v1/calls/{call['id']}"
    assert (call["state"], call["room"], call["destination"]) == ("queued", "sales-1", PHONE)
    assert call["metadata"] == {"crm": [1, {"a": None}]}
    assert call["options"] == {"phoneNumber": PHONE, "displayName": "Sales"}
    assert [entry["to"] for entry in call["history"]] == ["queued"]
    assert jobs(queue) == [(START_JOB, [call["id"], 1])]
    assert api.get(f"/v1/calls/{call['id']}").json() == call


def test_caller_chosen_id_is_used_and_cannot_be_reused(
    api: Api, queue: Queue, store: CallStore
) -> None:
    call = api.dial(userId="order-42")
    assert call["id"] == "order-42"
    again = api.post("/v1/calls", {"room": "other", "sipUri": SIP, "userId": "order-42"})
    assert_refused(again, 409)
    assert_nothing_done(queue, store, jobs_before=1)


def test_same_idempotency_key_and_body_replays_the_call(
    api: Api, queue: Queue, store: CallStore
) -> None:
    body = {"room": "sales-1", "phoneNumber": PHONE}
    key = {"Idempotency-Key": "order-42/attempt-1"}
    first = api.post("/v1/calls", body, headers=key)
    second = api.post("/v1/calls", dict(reversed(body.items())), headers=key)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json()["id"] == first.json()["id"]
    other = api.post("/v1/calls", {**body, "room": "sales-2"}, headers=key)
    assert "Idempotency-Key" in assert_refused(other, 409)["info"]
    assert_nothing_done(queue, store, jobs_before=1)


def test_concurrent_requests_with_one_key_create_one_call(
    api: Api, queue: Queue, store: CallStore
) -> None:
    barrier = threading.Barrier(8)
    answers: list[requests.Response] = []

    def send() -> None:
        barrier.wait()
        answers.append(
            api.post("/v1/calls", {"room": "r", "phoneNumber": PHONE},
                     headers={"Idempotency-Key": "same"})
        )  # fmt: skip

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in answers) == [200] * 7 + [202]
    assert len({r.json()["id"] for r in answers}) == 1
    assert_nothing_done(queue, store, jobs_before=1)


BAD_CALLS = [
    ({"phoneNumber": PHONE}, ["room"]),
    ({"room": "sales 1", "phoneNumber": PHONE}, ["room"]),
    ({"room": 7, "phoneNumber": PHONE}, ["room"]),
    ({"room": "r"}, ["phoneNumber", "sipUri"]),
    ({"room": "r", "phoneNumber": PHONE, "sipUri": SIP}, ["phoneNumber", "sipUri"]),
    ({"room": "r", "phoneNumber": "5550100"}, ["phoneNumber"]),
    ({"room": "r", "phoneNumber": 15550100000}, ["phoneNumber"]),
    ({"room": "r", "sipUri": "sip:a%0d%0aVia:x@b"}, ["sipUri"]),
    ({"room": "r", "sipUri": SIP, "extension": "12"}, ["extension"]),
    ({"room": "r", "phoneNumber": PHONE, "video": True}, ["video"]),
    ({"room": "r", "sipUri": SIP, "videoSettings": {"fps": 10}}, ["videoSettings"]),
    ({"room": "r", "sipUri": SIP, "video": True, "videoSettings": {"fps": 31}},
     ["videoSettings.fps"]),
    ({"room": "r", "phoneNumber": PHONE, "codecs": {"audio": ["opus"]}}, ["codecs.audio[0]"]),
    ({"room": "r", "phoneNumber": PHONE, "ringTimeoutSec": "30"}, ["ringTimeoutSec"]),
    ({"room": "r", "phoneNumber": PHONE, "ringTimeoutSec": 30.0}, ["ringTimeoutSec"]),
    ({"room": "r", "phoneNumber": PHONE, "maxDurationSec": True}, ["maxDurationSec"]),
    ({"room": "r", "phoneNumber": PHONE, "waitBeforeExtensionDialSec": 61},
     ["waitBeforeExtensionDialSec"]),
    ({"room": "r", "phoneNumber": PHONE, "userId": "a/b"}, ["userId"]),
    ({"room": "r", "phoneNumber": PHONE, "callerId": "not-a-uuid"}, ["callerId"]),
    ({"room": "r", "phoneNumber": PHONE, "colour": "red", "Room": "x"}, ["colour", "Room"]),
    ({"room": "r", "phoneNumber": PHONE, "metadata": {"n": 2**70}}, ["metadata"]),
    ({"room": "r", "phoneNumber": PHONE, "metadata": 2**53 + 1}, ["metadata"]),
    ({"room": "r", "phoneNumber": PHONE, "metadata": "\ud800"}, ["metadata"]),
    ({"room": "r", "phoneNumber": PHONE, "metadata": {"\udc00": 1}}, ["metadata"]),
    ({"room": "r", "phoneNumber": PHONE, "displayName": "x\ud800"}, ["displayName"]),
    ([{"room": "r"}], ["body"]),
    ("r", ["body"]),
    (None, ["body"]),
]  # fmt: skip


@pytest.mark.parametrize(("body", "fields"), BAD_CALLS)
def test_invalid_call_is_refused_naming_each_field(
    api: Api, queue: Queue, store: CallStore, body: Any, fields: list[str]
) -> None:
    response = api.post("/v1/calls", data=json.dumps(body),
                        headers={"Content-Type": "application/json"})  # fmt: skip
    refused = assert_refused(response, 400, *fields)
    assert refused["error"] == "invalid-request-error"
    assert_nothing_done(queue, store)


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ('{"room": "r", "phoneNumber": "+15550100000"}', "text/plain", 415),
        ('{"room": "r", "phoneNumber": "+15550100000"}', None, 415),
        ("room=r&phoneNumber=%2B15550100000", "application/x-www-form-urlencoded", 415),
        ('{"room": "r", ', "application/json", 400),
        ("", "application/json", 400),
        ('{"room": "r", "phoneNumber": "+15550100000", "metadata": NaN}', "application/json", 400),
        ("[" * 100_000 + "]" * 100_000, "application/json", 400),
        (b'{"room": "\xff"}', "application/json", 400),
        ('{"room": "r", "metadata": "' + "x" * 300_000 + '"}', "application/json", 413),
    ],
    ids=["text", "none", "form", "truncated", "empty", "nan", "deep", "not-utf8", "oversized"],
)
def test_unreadable_bodies_are_refused(
    api: Api,
    queue: Queue,
    store: CallStore,
    data: str | bytes,
    content_type: str | None,
    status: int,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.post("/v1/calls", data=data, headers=headers)
    refused = assert_refused(response, status)
    if status == 400:
        assert "body" in refused["fields"]
    assert_nothing_done(queue, store)


@pytest.mark.parametrize("key", ["", "has space", "k" * 256, "caf\xe9"])
def test_bad_idempotency_key_is_refused(api: Api, queue: Queue, store: CallStore, key: str) -> None:
    response = api.post("/v1/calls", {"room": "r", "phoneNumber": PHONE},
                        headers={"Idempotency-Key": key})  # fmt: skip
    assert_refused(response, 400, "Idempotency-Key")
    assert_nothing_done(queue, store)


# --- commands on a call -------------------------------------------------------------------------


def test_dtmf_and_transfer_need_a_live_call(api: Api, queue: Queue, store: CallStore) -> None:
    call = api.dial()
    dtmf = api.post(f"/v1/calls/{call['id']}/dtmf", {"tones": "12#"})
    assert "queued" in assert_refused(dtmf, 409)["info"]
    transfer = api.post(f"/v1/calls/{call['id']}/transfer", {"toEndPoint": SIP})
    assert_refused(transfer, 409)
    assert_nothing_done(queue, store, jobs_before=1)


def test_dtmf_and_transfer_on_an_answered_call_are_queued(
    api: Api, queue: Queue, commands: Queue, store: CallStore
) -> None:
    call_id = answered_call(store)
    dtmf = api.post(f"/v1/calls/{call_id}/dtmf",
                    {"tones": "12#", "method": "sip-info", "digitDurationMs": 100})  # fmt: skip
    assert dtmf.status_code == 202
    assert (dtmf.json()["id"], dtmf.json()["state"]) == (call_id, "answered")
    transfer = api.post(f"/v1/calls/{call_id}/transfer", {"toEndPoint": SIP, "refer": True})
    assert transfer.status_code == 202
    assert jobs(commands) == [  # the command lane, not behind starts
        (DTMF_JOB, [call_id, {"tones": "12#", "method": "sip-info", "digitDurationMs": 100}]),
        (TRANSFER_JOB, [call_id, {"toEndPoint": SIP, "refer": True}]),
    ]
    assert jobs(queue) == []


@pytest.mark.parametrize(
    ("verb", "body", "fields"),
    [
        ("dtmf", {}, ["tones"]),
        ("dtmf", {"tones": "12e"}, ["tones"]),
        ("dtmf", {"tones": "1" * 21}, ["tones"]),
        ("dtmf", {"tones": "1", "method": "inband", "digitDurationMs": 49},
         ["method", "digitDurationMs"]),
        ("dtmf", {"tones": "1", "volume": 3}, ["volume"]),
        ("transfer", {}, ["toEndPoint"]),
        ("transfer", {"toEndPoint": "agent"}, ["toEndPoint"]),
        ("transfer", {"toEndPoint": SIP, "extension": "1"}, ["extension"]),
        ("transfer", {"toEndPoint": PHONE, "refer": True, "callerId": "x"}, ["callerId"]),
        ("transfer", {"toEndPoint": PHONE, "refer": "yes"}, ["refer"]),
        ("stop", {"now": True}, ["now"]),
        ("stop", [], ["body"]),
    ],
)  # fmt: skip
def test_invalid_commands_are_refused_naming_each_field(
    api: Api, queue: Queue, store: CallStore, verb: str, body: Any, fields: list[str]
) -> None:
    call_id = answered_call(store)
    response = api.post(f"/v1/calls/{call_id}/{verb}", body)
    assert_refused(response, 400, *fields)
    assert queue.count == 0
    assert store.state(call_id) == "answered"


@pytest.mark.parametrize("verb", ["dtmf", "transfer"])
def test_command_bodies_must_be_json(api: Api, queue: Queue, store: CallStore, verb: str) -> None:
    call_id = answered_call(store)
    path = f"/v1/calls/{call_id}/{verb}"
    assert_refused(api.post(path, data="tones=1", headers={"Content-Type": "text/plain"}), 415)
    assert_refused(api.post(path, data="{", headers={"Content-Type": "application/json"}), 400)
    assert queue.count == 0


def test_stop_cancels_a_queued_call_and_is_idempotent(api: Api, queue: Queue) -> None:
    call = api.dial()
    for _ in range(2):
        response = api.post(f"/v1/calls/{call['id']}/stop")
        assert response.status_code == 202
        assert (response.json()["state"], response.json()["reason"]) == ("stopped", "cancelled")
    assert jobs(queue) == [(START_JOB, [call["id"], 1])]  # no stop job: nothing to hang up
    events = [e["event"] for e in api.get(f"/v1/calls/{call['id']}").json()["history"]]
    assert events == ["call.queued", "call.cancelled"]


def test_stop_on_a_live_call_queues_the_hang_up(
    api: Api, commands: Queue, store: CallStore
) -> None:
    call_id = answered_call(store)
    response = api.post(f"/v1/calls/{call_id}/stop", data="{}",
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 202
    assert response.json()["stopRequested"] == 1
    assert jobs(commands) == [(STOP_JOB, [call_id])]
    again = api.post(f"/v1/calls/{call_id}/stop")
    assert again.status_code == 202
    assert len(set(commands.get_job_ids())) == 1  # the same job id: still one hang-up
    assert_refused(api.post(f"/v1/calls/{call_id}/stop", data="x",
                            headers={"Content-Type": "text/plain"}), 415)  # fmt: skip


@pytest.mark.parametrize(
    ("verb", "body"), [("dtmf", {"tones": "1"}), ("transfer", {"toEndPoint": SIP}), ("stop", None)]
)
def test_commands_on_an_unknown_call_are_404(api: Api, queue: Queue, verb: str, body: Any) -> None:
    response = api.post(f"/v1/calls/{UNKNOWN_ID}/{verb}", body)
    assert assert_refused(response, 404)["error"] == "not-found-error"
    assert queue.count == 0


def test_unknown_call_is_404(api: Api) -> None:
    assert_refused(api.get("/v1/calls/nope"), 404)


# --- listing and the feed -----------------------------------------------------------------------


def test_listing_filters_and_pages_newest_first(api: Api) -> None:
    ids = [api.dial(room="east" if i % 2 else "west")["id"] for i in range(5)]
    api.post(f"/v1/calls/{ids[1]}/stop")
    listed = api.get("/v1/calls").json()
    assert [c["id"] for c in listed["calls"]] == ids[::-1]
    assert listed["next"] is None
    assert all("history" not in c for c in listed["calls"])
    east = api.get("/v1/calls", room="east").json()["calls"]
    assert [c["id"] for c in east] == [ids[3], ids[1]]
    stopped = api.get("/v1/calls", state="stopped").json()["calls"]
    assert [c["id"] for c in stopped] == [ids[1]]
    assert api.get("/v1/calls", state="queued", room="east").json()["calls"][0]["id"] == ids[3]

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/calls", **params).json()
        assert len(page["calls"]) <= 2
        seen += [c["id"] for c in page["calls"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ids[::-1]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/calls", {"limit": 0}, "limit"),
        ("/v1/calls", {"limit": 501}, "limit"),
        ("/v1/calls", {"limit": "ten"}, "limit"),
        ("/v1/calls", {"limit": "9" * 5000}, "limit"),
        ("/v1/calls", {"state": "new"}, "state"),
        ("/v1/calls", {"state": "ringing?"}, "state"),
        ("/v1/calls", {"room": "bad room"}, "room"),
        ("/v1/calls", {"cursor": "garbage"}, "cursor"),
        ("/v1/calls", {"sort": "asc"}, "sort"),
        ("/v1/calls", {"limit": [1, 2]}, "limit"),
        ("/v1/events", {"after": -1}, "after"),
        ("/v1/events", {"after": "1.5"}, "after"),
        ("/v1/events", {"limit": 0}, "limit"),
        ("/v1/events", {"room": "r"}, "room"),
        ("/v1/calls/x", {"expand": "history"}, "expand"),
    ],
)
def test_bad_query_parameters_are_refused(
    api: Api, path: str, params: dict[str, Any], field: str
) -> None:
    assert_refused(api.get(path, **params), 400, field)


def test_query_parameters_on_commands_are_refused(api: Api, queue: Queue) -> None:
    call = api.dial()
    response = api.post(f"/v1/calls/{call['id']}/stop?force=1")
    assert_refused(response, 400, "force")
    assert api.get(f"/v1/calls/{call['id']}").json()["state"] == "queued"
    assert queue.count == 1


def test_feed_returns_events_in_seq_order(api: Api) -> None:
    first, second = api.dial(), api.dial()
    api.post(f"/v1/calls/{first['id']}/stop")
    page = api.get("/v1/events").json()
    events = page["events"]
    assert [(e["callId"], e["event"]) for e in events] == [
        (first["id"], "call.queued"),
        (second["id"], "call.queued"),
        (first["id"], "call.cancelled"),
    ]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and page["next"] == seqs[-1]
    assert events[2]["from"] == "queued" and events[2]["to"] == "stopped"
    later = api.get("/v1/events", after=seqs[0], limit=1).json()
    assert [e["seq"] for e in later["events"]] == [seqs[1]]
    assert api.get("/v1/events", after=page["next"]).json() == {
        "events": [],
        "next": page["next"],
    }


# --- routing ------------------------------------------------------------------------------------


def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    assert_refused(api.get("/v1/nothing-here"), 404)
    assert_refused(api.get("/"), 404)
    wrong = requests.delete(f"{api.base}/v1/calls", headers=api.headers, timeout=5)
    assert assert_refused(wrong, 405)["error"] == "method-not-allowed-error"
    assert set(wrong.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert_refused(api.get("/v1/calls/x/stop"), 405)


# --- the record round trip, and records that cannot be read ------------------------------------


@pytest.mark.parametrize(
    "metadata", ["hello", "123", '{"a":1}', None, 2**53, [], {"deep": [{"x": None}]}]
)
def test_metadata_comes_back_exactly_as_given(api: Api, metadata: Any) -> None:
    call = api.dial(metadata=metadata)
    assert call["metadata"] == metadata and type(call["metadata"]) is type(metadata)
    again = api.get(f"/v1/calls/{call['id']}").json()
    [listed] = api.get("/v1/calls").json()["calls"]
    assert again["metadata"] == listed["metadata"] == metadata
    assert type(again["metadata"]) is type(listed["metadata"]) is type(metadata)
    assert requests.head(f"{api.base}/v1/calls", headers=api.headers, timeout=5).ok


def test_one_unreadable_record_never_breaks_a_listing_or_the_feed(
    api: Api, store: CallStore
) -> None:
    good, bad = api.dial(), api.dial()
    store.redis.hset(store.keys.call(bad["id"]), "metadata", "not json")  # an older version's
    store.redis.xadd(store.keys.feed, {"m": "{broken"}, id="999999-0")
    listed = api.get("/v1/calls")
    assert listed.status_code == 200
    calls = {c["id"]: c for c in listed.json()["calls"]}
    assert calls[good["id"]]["metadata"] == {} and "unreadable" not in calls[good["id"]]
    assert "metadata" in calls[bad["id"]]["unreadable"]
    assert api.get("/v1/calls", state="queued").status_code == 200
    one = api.get(f"/v1/calls/{bad['id']}")
    assert one.status_code == 200 and "metadata" in one.json()["unreadable"]
    store.redis.xadd(store.keys.feed, {"c": "x", "d": "{}"}, id="1000000-0")  # fields missing
    events = api.get("/v1/events").json()["events"]
    assert events[-2] == {"seq": 999999, "unreadable": "feed entry is not JSON"}
    assert events[-1] == {"seq": 1000000, "unreadable": "feed entry is incomplete"}


def test_feed_entries_written_before_the_compact_form_still_read(
    api: Api, store: CallStore
) -> None:
    """An entry an earlier version wrote (the published JSON whole) reads as it did."""
    old = {"seq": 999999, "callId": "c-old", "sessionId": None, "room": "r", "kind": "dialout",
           "event": "call.queued", "from": "new", "to": "queued", "at": "2026-01-01T00:00:00Z",
           "source": "api", "ignored": False, "data": {"a": []}}  # fmt: skip
    store.redis.xadd(store.keys.feed, {"m": json.dumps(old)}, id="999999-0")
    assert api.get("/v1/events").json()["events"][-1] == old


# --- hostile input through the production server ------------------------------------------------

CALL_FIELDS = ["room", "phoneNumber", "sipUri", "displayName", "userId", "callerId", "extension",
               "waitBeforeExtensionDialSec", "video", "videoSettings", "codecs", "permissions",
               "ringTimeoutSec", "maxDurationSec", "metadata"]  # fmt: skip


def test_hostile_calls_never_get_a_5xx_and_a_4xx_changes_nothing(
    settings: Settings, redis_client: Any
) -> None:
    from hypothesis import HealthCheck, given
    from hypothesis import settings as examples
    from support.servers import granian

    statuses: list[int] = []
    with granian(settings) as base:
        api = Api(base)

        @examples(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            fields=st.dictionaries(st.sampled_from(CALL_FIELDS), HOSTILE, max_size=2),
            metadata=st.none()
            | st.just({})
            | st.recursive(
                st.none() | st.booleans() | st.integers(-(2**53), 2**53) | HOSTILE_TEXT,
                lambda inner: (
                    st.lists(inner, max_size=3) | st.dictionaries(HOSTILE_TEXT, inner, max_size=3)
                ),
                max_leaves=8,
            ),
            valid_base=st.booleans(),
        )
        def post(fields: dict[str, Any], metadata: Any, valid_base: bool) -> None:
            body = {"room": "sales-1", "phoneNumber": PHONE} if valid_base else {}
            if metadata != {}:
                body["metadata"] = metadata
            body.update(fields)
            before = redis_dump(redis_client)
            response = api.post("/v1/calls", body)
            statuses.append(response.status_code)
            assert response.status_code < 500, (body, response.text)
            if response.status_code != 202:
                assert_refused(response, response.status_code)
                assert redis_dump(redis_client) == before, body
                return
            call = response.json()  # accepted whole: it reads back exactly as sent
            sent = json.loads(json.dumps(body.get("metadata", {})))  # a surrogate pair is one
            assert api.get(f"/v1/calls/{call['id']}").json()["metadata"] == sent
            assert api.get("/v1/calls").status_code == 200

        post()
    print(sorted(collections.Counter(statuses).items()))
    assert {202, 400} <= set(statuses)  # both paths were exercised


@pytest.mark.parametrize("uri", SIP_REFUSED)
def test_sip_header_injection_is_refused_and_changes_nothing(
    api: Api, queue: Queue, store: CallStore, uri: str
) -> None:
    assert_refused(api.post("/v1/calls", {"room": "r", "sipUri": uri}), 400, "sipUri")
    named = {"room": "r", "phoneNumber": PHONE, "displayName": NAME_REFUSED[0]}
    assert_refused(api.post("/v1/calls", named), 400, "displayName")
    assert_nothing_done(queue, store)


@pytest.mark.parametrize("uri", SIP_ACCEPTED)
def test_documented_sip_uris_are_dialled(api: Api, uri: str) -> None:
    response = api.post("/v1/calls", {"room": "r", "sipUri": uri})
    assert response.status_code == 202 and response.json()["destination"] == uri


def test_no_caller_chosen_id_reaches_another_calls_jobs_or_a_dialin(
    api: Api, queue: Queue, store: CallStore
) -> None:
    import hashlib

    first = api.dial(userId="a.b")  # not a job-id word: its jobs are named by a digest
    digest = "h" + hashlib.sha256(b"a.b").hexdigest()[:20]
    second = api.dial(userId=digest)  # shaped like the first call's job-id word
    starts = sorted(args[0] for name, args in jobs(queue) if name == START_JOB)
    assert starts == sorted([first["id"], second["id"]])  # neither overwrote the other
    job_ids = {job.id for job in queue.get_jobs()}
    assert len(job_ids) == 2

    for reserved in ("dialin-s1", "DIALIN-s1", "Dialin-x"):
        refused = api.post("/v1/calls", {"room": "r", "phoneNumber": PHONE, "userId": reserved})
        assert "dialin-" in assert_refused(refused, 400, "userId")["fields"]["userId"]
    assert store.get("dialin-s1") is None and queue.count == 2

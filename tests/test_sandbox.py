"""The sandbox over real HTTP, with a real receiver collecting its webhooks.

Every expectation comes from daily-api.md and the outcome table; signatures are recomputed
here with hmac/hashlib/base64, independently of ``telephony.signature``. Waits poll with
deadlines; delays run at small time scales.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar
from wsgiref.types import StartResponse, WSGIEnvironment

import pytest
import requests
from werkzeug.wrappers import Request, Response

from telephony import defaults
from telephony.cli import build_parser
from telephony.config import RateLimit
from telephony.redis_server import free_port
from telephony.sandbox import outcomes
from telephony.sandbox.delivery import Disorder
from telephony.sandbox.events import ANSWERED, CONNECTED, STOPPED, Event
from telephony.sandbox.outcomes import FIXED, PARAMETRIZED, PHONES, outcome_for
from telephony.sandbox.server import Sandbox
from telephony.sandbox.sessions import shuffled
from telephony.serving import QuietRequestHandler, ServerThread

T = TypeVar("T")
WEBHOOK_SECRET = base64.b64encode(b"sandbox-tests-webhook-secret").decode()
ROOT = Path(__file__).resolve().parents[1]
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
DIALOUT_FIELDS = {"timestamp", "session_id", "user_id", "domain_id", "room", "destination"}
DIALOUT_FIELDS |= {"caller_id"}
TRANSFER_FIELDS = {
    "timestamp",
    "session_id",
    "mtg_session_id",
    "domain_id",
    "room",
    "to_endpoint",
    "from_endpoint",
    "is_sip_refer",
}


# --- helpers ------------------------------------------------------------------------------------


def eventually(check: Callable[[], T | None], timeout: float = 5.0, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.01)


@dataclass
class Received:
    t: float
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def type(self) -> str | None:
        body = self.json
        return body.get("type") if isinstance(body, dict) else None


class Receiver:
    """A real webhook receiver: records every POST, answers as scripted (default 200 at once)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._script: deque[tuple[int, float]] = deque()
        self._lock = threading.Lock()
        self._server = ServerThread(self._app, request_handler=QuietRequestHandler).start()
        self.url = f"{self._server.url}/hook"

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        if request.method != "POST":
            return Response(status=405)(environ, start_response)
        raw = request.get_data()
        with self._lock:
            self.received.append(Received(time.monotonic(), dict(request.headers), raw))
            status, delay = self._script.popleft() if self._script else (200, 0)
        time.sleep(delay)
        return Response(status=status)(environ, start_response)

    def answer(self, status: int, times: int = 1, delay: float = 0.0) -> None:
        with self._lock:
            self._script.extend([(status, delay)] * times)

    def events(self, session_id: str | None = None) -> list[Received]:
        with self._lock:
            got = [r for r in self.received if r.type is not None]
        if session_id is None:
            return got
        return [r for r in got if r.json["payload"].get("session_id") == session_id]

    def types(self, session_id: str | None = None) -> list[str | None]:
        return [r.type for r in self.events(session_id)]

    def close(self) -> None:
        self._server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post(sb: Sandbox, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("headers", auth(sb.api_key))
    kwargs.setdefault("timeout", 10)
    if isinstance(body, bytes):
        return requests.post(sb.url + path, data=body, **kwargs)
    return requests.post(sb.url + path, json=body, **kwargs)


def start(sb: Sandbox, room: str = "room-1", **body: Any) -> requests.Response:
    return post(sb, f"/rooms/{room}/dialOut/start", body)


def started(sb: Sandbox, room: str = "room-1", **body: Any) -> str:
    """Start a call that must be accepted; its ``sessionId``."""
    response = start(sb, room, **body)
    assert response.status_code == 200, response.text
    return str(response.json()["sessionId"])


def register(sb: Sandbox, url: str, **fields: Any) -> dict[str, Any]:
    response = post(sb, "/webhooks", {"url": url, **fields})
    assert response.status_code == 200, response.text
    return dict(response.json())


def session(sb: Sandbox, session_id: str) -> dict[str, Any]:
    return next(s for s in sb.sessions() if s["sessionId"] == session_id)


def sent_types(sb: Sandbox, session_id: str) -> list[str]:
    return [e["type"] for e in session(sb, session_id)["events"]]


def independent_signature(secret: str, timestamp: str, raw: bytes) -> str:
    key = base64.b64decode(secret)
    digest = hmac.new(key, timestamp.encode() + b"." + raw, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def assert_error(response: requests.Response, status: int, error: str, info: str = "") -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "info"}
    assert body["error"] == error
    assert info in body["info"]
    return str(body["info"])


# --- auth and error bodies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/rooms/room-1/dialOut/start"),
        ("POST", "/rooms/room-1/dialOut/stop"),
        ("POST", "/rooms/room-1/dialOut/sendDTMF"),
        ("POST", "/rooms/room-1/sipCallTransfer"),
        ("POST", "/rooms/room-1/sipRefer"),
        ("POST", "/webhooks"),
        ("GET", "/webhooks"),
        ("GET", "/webhooks/x"),
        ("DELETE", "/webhooks/x"),
    ],
)
def test_every_endpoint_refuses_a_missing_or_wrong_key(
    sandbox: Sandbox, method: str, path: str
) -> None:
    body = {"phoneNumber": "+15550100000"}
    for headers in ({}, auth("wrong"), {"Authorization": "Basic c2FuZGJveA=="}):
        response = requests.request(method, sandbox.url + path, json=body, headers=headers)
        assert_error(response, 401, "authentication-error")
    assert sandbox.starts() == []  # refused before anything was looked at


def test_bad_json_is_a_json_parsing_error(sandbox: Sandbox) -> None:
    for path in ("/rooms/room-1/dialOut/start", "/rooms/room-1/dialOut/stop", "/webhooks"):
        assert_error(post(sandbox, path, b"{not json"), 400, "json-parsing-error")
    assert [s["status"] for s in sandbox.starts()] == [400]
    assert sandbox.sessions() == []


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["phoneNumber", "sipUri"]),
        ({"phoneNumber": "+15550100000", "sipUri": "sip:a@b.c"}, ["phoneNumber"]),
        ({"phoneNumber": "5550100000"}, ["phoneNumber"]),
        ({"phoneNumber": "+15550100000", "userId": "u" * 37}, ["userId"]),
        ({"phoneNumber": "+15550100000", "colour": "red"}, ["colour"]),
        ({"sipUri": "sip:a@b.c?Y-bad=1"}, ["sipUri"]),
        ([1, 2], []),
    ],
)
def test_invalid_start_bodies_are_refused_naming_the_field(
    sandbox: Sandbox, body: Any, fields: list[str]
) -> None:
    info = assert_error(
        post(sandbox, "/rooms/room-1/dialOut/start", body), 400, "invalid-request-error"
    )
    for name in fields:
        assert name in info
    (attempt,) = sandbox.starts()
    assert attempt["status"] == 400
    assert attempt["counted"] is False  # a refused body does not use the rate limit
    assert sandbox.sessions() == []


def test_room_names_are_validated_and_not_hosting_is_404(sandbox: Sandbox) -> None:
    info = assert_error(
        start(sandbox, "bad.room", phoneNumber="+15550100000"), 400, "invalid-request-error"
    )
    assert "room" in info
    for path in (
        "dialOut/start",
        "dialOut/stop",
        "dialOut/sendDTMF",
        "sipCallTransfer",
        "sipRefer",
    ):
        response = post(sandbox, f"/rooms/not-hosting/{path}", {"sessionId": str(uuid.uuid4())})
        assert_error(response, 404, "not-found-error", "Room is not hosting a call")


def test_a_sixth_leg_in_a_room_is_refused_until_one_ends() -> None:
    """Daily's ``max_sip_pstn_sessions_per_room`` (5): a sixth start in the room is refused
    400 and places nothing; another room is not affected; a leg that ends frees its place."""
    with Sandbox(time_scale=0.05, rate_limit=RateLimit(100, 1.0)) as sandbox:
        legs = [
            started(sandbox, "full", phoneNumber="+15550100000", userId=f"u{n}") for n in range(5)
        ]
        refused = start(sandbox, "full", phoneNumber="+15550100000", userId="u5")
        assert_error(refused, 400, "invalid-request-error", "max SIP/PSTN sessions reached")
        assert sandbox.starts()[-1]["status"] == 400 and sandbox.starts()[-1]["sessionId"] is None
        assert len(sandbox.sessions()) == 5  # nothing placed
        started(sandbox, "other", phoneNumber="+15550100000")
        assert post(sandbox, "/rooms/full/dialOut/stop", {"sessionId": legs[0]}).status_code == 200
        eventually(
            lambda: start(sandbox, "full", phoneNumber="+15550100000", userId="u5").ok or None,
            what="the stopped leg's place to be free",
        )
        rooms = requests.get(f"{sandbox.base_url}/_sandbox/rooms", timeout=5).json()
        assert rooms == {"full": {"legs": 5, "peak": 5}, "other": {"legs": 1, "peak": 1}}


def test_unknown_routes_and_methods_answer_daily_style_json(sandbox: Sandbox) -> None:
    response = requests.get(sandbox.url + "/nowhere", headers=auth(sandbox.api_key))
    assert_error(response, 404, "not-found-error")
    response = requests.get(
        sandbox.url + "/rooms/room-1/dialOut/start", headers=auth(sandbox.api_key)
    )
    assert_error(response, 405, "invalid-request-error")


# --- the start call and commands on a session -------------------------------------------------


def test_start_answers_string_true_and_a_uuid4_session(sandbox: Sandbox) -> None:
    response = start(sandbox, phoneNumber="+15550100000", userId="call-1")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"ok", "sessionId"}
    assert body["ok"] == "true"
    assert UUID4.fullmatch(body["sessionId"])
    (attempt,) = sandbox.starts()
    assert attempt["status"] == 200
    assert attempt["sessionId"] == body["sessionId"]
    assert attempt["userId"] == "call-1"
    assert attempt["destination"] == "+15550100000"
    assert attempt["counted"] is True


def test_stop_ends_a_live_session_once(sandbox: Sandbox) -> None:
    sid = started(sandbox, phoneNumber="+15550100001")  # rings forever
    eventually(lambda: session(sandbox, sid)["state"] == "connected", what="connected")
    response = post(sandbox, "/rooms/room-1/dialOut/stop", {"sessionId": sid})
    assert response.status_code == 200
    assert response.json() == {"status": "sent"}
    again = post(sandbox, "/rooms/room-1/dialOut/stop", {"sessionId": sid})
    assert_error(again, 404, "not-found-error", "No dialout to stop")
    eventually(lambda: session(sandbox, sid)["state"] == "stopped", what="stopped")
    assert sent_types(sandbox, sid) == ["dialout.connected", "dialout.stopped"]
    for room, other in (("room-1", str(uuid.uuid4())), ("room-2", sid)):
        response = post(sandbox, f"/rooms/{room}/dialOut/stop", {"sessionId": other})
        assert_error(response, 404, "not-found-error", "No dialout to stop")
    info = assert_error(
        post(sandbox, "/rooms/room-1/dialOut/stop", {}), 400, "invalid-request-error"
    )
    assert "sessionId" in info


def test_stop_before_connect_cancels_the_timeline() -> None:
    with Sandbox(time_scale=1.0) as sb:
        sid = started(sb, phoneNumber="+15550100003")
        assert post(sb, "/rooms/room-1/dialOut/stop", {"sessionId": sid}).status_code == 200
        eventually(lambda: session(sb, sid)["state"] == "stopped", what="stopped")
        time.sleep(0.4)  # past the 0.3 s connect the timeline had scheduled
        assert sent_types(sb, sid) == ["dialout.stopped"]


def test_send_dtmf_needs_a_connected_or_answered_session() -> None:
    with Sandbox(time_scale=0.5) as sb:
        sid = started(sb, phoneNumber="+15550100000")
        dtmf = {"sessionId": sid, "tones": "12#", "digitDurationMs": 100, "method": "sip-info"}
        early = post(sb, "/rooms/room-1/dialOut/sendDTMF", dtmf)  # still dialing (0.15 s)
        assert_error(early, 404, "not-found-error", "No session running")
        eventually(lambda: session(sb, sid)["state"] == "connected", what="connected")
        response = post(sb, "/rooms/room-1/dialOut/sendDTMF", dtmf)
        assert response.status_code == 200
        assert response.json() == {"ok": "true"}
        (sent,) = session(sb, sid)["dtmf"]
        assert (sent["tones"], sent["digitDurationMs"], sent["method"]) == ("12#", 100, "sip-info")
        bad = post(sb, "/rooms/room-1/dialOut/sendDTMF", {"sessionId": sid, "tones": "12x"})
        assert "tones" in assert_error(bad, 400, "invalid-request-error")
        post(sb, "/rooms/room-1/dialOut/stop", {"sessionId": sid})
        late = post(sb, "/rooms/room-1/dialOut/sendDTMF", dtmf)
        assert_error(late, 404, "not-found-error", "No session running")


@pytest.mark.parametrize("refer", [False, True])
def test_transfer_emits_its_events_then_stops_the_old_leg(
    sandbox: Sandbox, receiver: Receiver, refer: bool
) -> None:
    register(sandbox, receiver.url)
    sid = started(sandbox, phoneNumber="+15550100000", userId="call-t")
    path = "/rooms/room-1/sipRefer" if refer else "/rooms/room-1/sipCallTransfer"
    to = "sip:agent@example.com" if refer else "+15550100123"
    eventually(lambda: session(sandbox, sid)["state"] == "answered", what="answered")
    response = post(sandbox, path, {"sessionId": sid, "toEndPoint": to})
    assert response.status_code == 200
    assert response.json() == {"ok": "true"}
    again = post(sandbox, path, {"sessionId": sid, "toEndPoint": to})
    assert_error(again, 404, "not-found-error", "No session running")
    expected = [
        "dialout.connected",
        "dialout.answered",
        "calltransfer.triggered",
        "calltransfer.initiated",
        "calltransfer.answered",
        "calltransfer.completed",
        "dialout.stopped",
    ]
    eventually(lambda: receiver.types(sid) == expected, what=f"{expected}: {receiver.types(sid)}")
    meetings = set()
    for got in receiver.events(sid)[2:6]:
        payload = got.json["payload"]
        assert set(payload) == TRANSFER_FIELDS
        assert payload["is_sip_refer"] is refer
        assert (payload["to_endpoint"], payload["from_endpoint"]) == (to, "+15550100000")
        assert payload["room"] == "room-1"
        meetings.add(payload["mtg_session_id"])
    assert len(meetings) == 1
    assert session(sandbox, sid)["transfers"][0]["refer"] is refer


def test_transfer_validation_and_unknown_sessions(sandbox: Sandbox) -> None:
    missing = post(sandbox, "/rooms/room-1/sipCallTransfer", {"sessionId": str(uuid.uuid4())})
    assert "toEndPoint" in assert_error(missing, 400, "invalid-request-error")
    refer_extra = {"sessionId": str(uuid.uuid4()), "toEndPoint": "sip:a@b.c", "extension": "12"}
    assert "extension" in assert_error(
        post(sandbox, "/rooms/room-1/sipRefer", refer_extra), 400, "invalid-request-error"
    )
    ringing = started(sandbox, phoneNumber="+15550100001")  # connected, never answered
    eventually(lambda: session(sandbox, ringing)["state"] == "connected", what="ringing")
    body = {"sessionId": ringing, "toEndPoint": "+15550100123"}
    response = post(sandbox, "/rooms/room-1/sipCallTransfer", body)
    assert_error(response, 400, "invalid-request-error", "not answered")
    assert session(sandbox, ringing)["transfers"] == []
    unknown = {"sessionId": str(uuid.uuid4()), "toEndPoint": "+15550100123"}
    response = post(sandbox, "/rooms/room-1/sipCallTransfer", unknown)
    assert_error(response, 404, "not-found-error", "No session running")


# --- the magic numbers --------------------------------------------------------------------------


def test_every_phone_number_has_the_same_outcome_as_its_sip_user() -> None:
    for phone, name in PHONES.items():
        assert outcome_for(phone) is FIXED[name]
        assert outcome_for(f"sip:{name}@example.com") is FIXED[name]
    for stem, (prefix, _) in PARAMETRIZED.items():
        for digit in range(1, 10):
            by_phone = outcome_for(f"{prefix}{digit}")
            assert by_phone == outcome_for(f"sip:{stem}{digit}@example.com")
            assert by_phone.name == f"{stem}{digit}"
    for other in ("+15550100040", "+442071838750", "sip:someone@example.com", "sip:slow0@x"):
        assert outcome_for(other).name == "answer"


def test_the_readme_table_is_the_outcomes_table() -> None:
    def rows(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("|")]

    readme = (ROOT / "README.md").read_text().split("\n## The sandbox\n", 1)[1]
    table = rows(str(outcomes.__doc__))
    assert rows(readme.split("\n## ", 1)[0]) == table
    for phone in PHONES:
        assert sum(f"`{phone}`" in row for row in table) == 1
    for stem, (prefix, _) in PARAMETRIZED.items():
        assert sum(f"`{prefix}" in row and f"`sip:{stem}" in row for row in table) == 1


TIMELINES = {
    "answer": (["dialout.connected", "dialout.answered"], "answered"),
    "noanswer": (["dialout.connected"], "connected"),
    "reject": (["dialout.connected", "dialout.error"], "error"),
    "hangup": (["dialout.connected", "dialout.answered", "dialout.stopped"], "stopped"),
    "warning": (["dialout.connected", "dialout.warning", "dialout.answered"], "answered"),
}
NUMBERS = {v: k for k, v in PHONES.items()}


@pytest.mark.parametrize("by_sip", [False, True], ids=["phone", "sip"])
@pytest.mark.parametrize("name", list(TIMELINES))
def test_timeline_outcomes(sandbox: Sandbox, receiver: Receiver, name: str, by_sip: bool) -> None:
    register(sandbox, receiver.url)
    target = {"sipUri": f"sip:{name}@example.com"} if by_sip else {"phoneNumber": NUMBERS[name]}
    sid = started(sandbox, userId=f"call-{name}", **target)
    types, state = TIMELINES[name]
    eventually(lambda: receiver.types(sid) == types, what=f"{types}, got {receiver.types(sid)}")
    assert session(sandbox, sid)["state"] == state
    if name == "reject":
        assert receiver.events(sid)[-1].json["payload"]["error_msg"] == "Call rejected: busy"
    if state in ("answered", "connected"):  # up until stopped
        time.sleep(0.2)  # 4x the answer delay at this scale: nothing else happens
        assert receiver.types(sid) == types
        assert post(sandbox, "/rooms/room-1/dialOut/stop", {"sessionId": sid}).status_code == 200
        final = [*types, "dialout.stopped"]
        eventually(lambda: receiver.types(sid) == final, what=f"{final}: {receiver.types(sid)}")


@pytest.mark.parametrize(
    ("target", "status", "error"),
    [
        ({"phoneNumber": "+15550100042"}, 400, "invalid-request-error"),
        ({"sipUri": "sip:unavailable2@example.com"}, 400, "invalid-request-error"),
        ({"phoneNumber": "+15550100052"}, 503, "server-error"),
        ({"sipUri": "sip:overloaded2@example.com"}, 503, "server-error"),
    ],
)
def test_temporarily_unavailable_refuses_the_first_n_starts_per_user(
    target: dict[str, str], status: int, error: str
) -> None:
    with Sandbox(time_scale=0.05, rate_limit=RateLimit(100, 1.0)) as sb:
        for _ in range(2):
            info = assert_error(start(sb, userId="call-a", **target), status, error)
            assert info.startswith("TEMPORARILY_NOT_AVAILABLE: ")
        assert_error(start(sb, userId="call-b", **target), status, error)  # its own count
        started(sb, userId="call-a", **target)
        started(sb, userId="call-a", **target)  # stays through once past N
        refused = [s for s in sb.starts() if s["status"] == status]
        assert len(refused) == 3
        assert all(s["counted"] and s["sessionId"] is None for s in refused)
        assert len(sb.sessions()) == 2
        # without a userId, the destination is what is counted
        assert start(sb, **target).status_code == status
        assert start(sb, **target).status_code == status
        assert start(sb, **target).status_code == 200


@pytest.mark.parametrize(
    ("target", "status", "error", "info"),
    [
        (
            "notallowed",
            403,
            "forbidden-error",
            "NOT_ALLOWED: dial-out is not enabled for this room",
        ),
        (
            "inprogress",
            400,
            "invalid-request-error",
            "DIALOUT_IN_PROGRESS: a dial-out is already being started",
        ),
        ("servererror", 500, "server-error", "internal error"),
    ],
)
def test_refusals_place_no_call(
    sandbox: Sandbox, receiver: Receiver, target: str, status: int, error: str, info: str
) -> None:
    register(sandbox, receiver.url)
    for destination in ({"phoneNumber": NUMBERS[target]}, {"sipUri": f"sip:{target}@x.example"}):
        response = start(sandbox, userId="call-r", **destination)
        assert response.status_code == status
        assert response.json() == {"error": error, "info": info}
    assert sandbox.sessions() == []
    assert [s["status"] for s in sandbox.starts()] == [status, status]


def test_slow_start_places_the_call_but_answers_late(sandbox: Sandbox, receiver: Receiver) -> None:
    register(sandbox, receiver.url)
    began = time.monotonic()
    sid = started(sandbox, phoneNumber="+15550100064", userId="call-slow")  # 4 s * 0.05
    assert time.monotonic() - began >= 0.2
    assert receiver.types(sid)[:1] == ["dialout.connected"]  # webhooks came first (at 0.015)
    with pytest.raises(requests.ReadTimeout):  # a client that gives up sooner: ambiguous
        post(sandbox, "/rooms/room-1/dialOut/start", {"sipUri": "sip:slow9@x.example"}, timeout=0.1)
    placed = eventually(lambda: [s for s in sandbox.sessions() if s["outcome"] == "slow9"])
    assert placed[0]["destination"] == "sip:slow9@x.example"


def test_shuffle_sends_every_event_twice_out_of_order(sandbox: Sandbox, receiver: Receiver) -> None:
    register(sandbox, receiver.url)
    sid = started(sandbox, phoneNumber="+15550100070", userId="call-s")
    eventually(lambda: len(receiver.events(sid)) == 4, what="4 deliveries")
    got = receiver.events(sid)
    types = [str(r.type) for r in got]
    assert sorted(types) == ["dialout.answered"] * 2 + ["dialout.connected"] * 2
    assert types[0] == "dialout.answered"  # answered before connected
    ids: dict[str | None, set[str]] = {r.type: set() for r in got}
    for r in got:
        ids[r.type].add(r.json["id"])
    assert all(len(v) == 1 for v in ids.values())  # a duplicate is the same event (same id)
    assert session(sandbox, sid)["state"] == "answered"
    post(sandbox, "/rooms/room-1/dialOut/stop", {"sessionId": sid})
    eventually(lambda: receiver.types(sid)[4:] == ["dialout.stopped"] * 2, what="stopped twice")


def test_shuffled_order_is_seeded_and_never_the_true_order() -> None:
    held = [Event(CONNECTED, {}), Event(ANSWERED, {}), Event(STOPPED, {})]
    for n in range(200):
        copies = shuffled(f"session-{n}", 0, held)
        assert copies[0] is not held[0]
        assert all(copies.count(event) == 2 for event in held)
        assert copies == shuffled(f"session-{n}", 0, held)  # deterministic per session
    single = [Event(STOPPED, {})]
    assert shuffled("s", 1, single) == single * 2


def test_disorder_sends_every_event_three_times_and_late_ones_overtake(
    receiver: Receiver,
) -> None:
    # Seed 2 holds a copy of connected back 0.37 s past the first answered: a sure overtake.
    disorder = Disorder(copies=3, delay=5.0, rng=random.Random(2))
    with Sandbox(time_scale=0.1, disorder=disorder) as sb:
        register(sb, receiver.url)
        sid = started(sb, phoneNumber="+15550100000", userId="call-x")
        eventually(lambda: len(receiver.events(sid)) == 6, what="6 deliveries")
        post(sb, "/rooms/room-1/dialOut/stop", {"sessionId": sid})
        eventually(lambda: len(receiver.events(sid)) == 9, what="9 deliveries")
        got = receiver.events(sid)
        by_type: dict[str | None, set[str]] = {}
        for r in got:
            by_type.setdefault(r.type, set()).add(r.json["id"])
        assert {t: len(ids) for t, ids in by_type.items()} == {
            "dialout.connected": 1, "dialout.answered": 1, "dialout.stopped": 1,
        }  # fmt: skip
        types = [r.type for r in got]
        assert all(types.count(t) == 3 for t in by_type)  # each event three times, same id
        assert types.index("dialout.answered") < len(types) - 1 - types[::-1].index(
            "dialout.connected"
        )  # a late copy of connected arrived after answered
        assert [e["type"] for e in session(sb, sid)["events"]] == [
            "dialout.connected", "dialout.answered", "dialout.stopped",
        ]  # fmt: skip
        time.sleep(0.2)
        assert len(receiver.events(sid)) == 9  # and no more


def test_an_early_start_waits_for_its_delayed_copies(receiver: Receiver) -> None:
    with Sandbox(time_scale=0.1, disorder=Disorder(copies=2, delay=3.0)) as sb:
        register(sb, receiver.url)
        response = start(sb, sipUri="sip:early@x.example", userId="call-e")
        assert response.status_code == 200
        got = receiver.types(response.json()["sessionId"])
        assert sorted(map(str, got)) == ["dialout.answered"] * 2 + ["dialout.connected"] * 2


def test_disorder_needs_a_copy_and_no_negative_delay() -> None:
    for copies, delay in ((0, 0.0), (1, -1.0)):
        with pytest.raises(ValueError, match="copies"):
            Disorder(copies, delay)
    assert Disorder().delays(1.0) == [0.0]
    assert Disorder(copies=3).delays(0.5) == [0.0] * 3
    assert all(0 <= d <= 1.0 for d in Disorder(copies=50, delay=2.0).delays(0.5))


def test_early_delivers_connected_and_answered_before_the_response(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    register(sandbox, receiver.url)
    response = start(sandbox, sipUri="sip:early@x.example", userId="call-e")
    assert response.status_code == 200
    sid = response.json()["sessionId"]
    assert receiver.types(sid) == ["dialout.connected", "dialout.answered"]
    assert all(r.json["payload"]["user_id"] == "call-e" for r in receiver.events(sid))


def test_drop_places_the_call_and_closes_the_connection(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    register(sandbox, receiver.url)
    with pytest.raises(requests.ConnectionError):
        start(sandbox, phoneNumber="+15550100093", userId="call-d")
    (attempt,) = sandbox.starts()
    assert (attempt["status"], attempt["dropped"]) == (None, True)
    sid = attempt["sessionId"]
    eventually(
        lambda: receiver.types(sid) == ["dialout.connected", "dialout.answered"],
        what="the dropped start's call answering",
    )
    assert receiver.events(sid)[0].json["payload"]["user_id"] == "call-d"


class HungStart:
    """A ``hang`` start on its own thread, with a client timeout far beyond the sandbox's hold."""

    def __init__(self, sb: Sandbox, target: dict[str, str], timeout: float = 10.0) -> None:
        self.error: BaseException | None = None
        self.elapsed = 0.0
        self.thread = threading.Thread(target=self._run, args=(sb, target, timeout), daemon=True)
        self.thread.start()
        eventually(lambda: sb.core.holds.held() == 1, what="the start held open")

    def _run(self, sb: Sandbox, target: dict[str, str], timeout: float) -> None:
        began = time.monotonic()
        try:
            start_ = post(sb, "/rooms/room-1/dialOut/start", target, timeout=timeout)
            self.error = AssertionError(f"answered {start_.status_code}: {start_.text}")
        except requests.RequestException as exc:
            self.error = exc
        self.elapsed = time.monotonic() - began

    def closed_without_response(self, within: float) -> float:
        """Seconds the request was held; fails unless the server closed it with no response."""
        self.thread.join(within)
        assert not self.thread.is_alive(), "still held"
        assert isinstance(self.error, requests.ConnectionError), self.error
        assert not isinstance(self.error, requests.Timeout)  # closed by the server, not us
        return self.elapsed


def assert_hung(attempt: dict[str, Any], released: str | None) -> None:
    """A start that placed nothing and got no answer (it still used the rate limit)."""
    assert (attempt["hung"], attempt["released"]) == (True, released)
    assert (attempt["status"], attempt["sessionId"], attempt["dropped"]) == (None, None, False)
    assert attempt["counted"] is True


def test_hang_places_nothing_and_is_held_until_the_client_gives_up(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    register(sandbox, receiver.url)  # held for 60 s * 0.05 = 3 s at most
    began = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        post(sandbox, "/rooms/room-1/dialOut/start", {"phoneNumber": "+15550100095"}, timeout=0.2)
    eventually(lambda: sandbox.starts()[0]["released"], timeout=1.0, what="released")
    assert time.monotonic() - began < 1.5  # noticed the client leaving, long before 3 s
    (attempt,) = sandbox.starts()
    assert_hung(attempt, "client")
    assert (attempt["destination"], attempt["outcome"]) == ("+15550100095", "hang")
    assert sandbox.core.holds.held() == 0
    assert sandbox.sessions() == []
    assert [d["type"] for d in sandbox.deliveries()] == ["test"]  # no webhook: no call
    assert receiver.events() == []


def test_hang_closes_without_a_response_at_its_bound_and_blocks_nothing() -> None:
    with Sandbox(time_scale=0.001) as sb:  # 60 s * 0.001 is below the 1 s floor
        hung = HungStart(sb, {"sipUri": "sip:hang@pbx.example", "userId": "call-h"})
        began = time.monotonic()
        sid = started(sb, phoneNumber="+15550100000")  # served while the other is held
        assert requests.get(sb.base_url + "/_sandbox/starts", timeout=1).status_code == 200
        assert time.monotonic() - began < 0.5
        assert sb.starts()[0]["released"] is None  # still held
        held = hung.closed_without_response(within=3.0)
        assert defaults.SANDBOX_HANG_MIN <= held < defaults.SANDBOX_HANG_MIN + 1.0
        hang, answered = sb.starts()
        assert_hung(hang, "timeout")
        assert (answered["status"], answered["sessionId"]) == (200, sid)
        assert hang["userId"] == "call-h"
        assert [s["sessionId"] for s in sb.sessions()] == [sid]  # only the answered start's


def test_stop_releases_a_held_start_at_once() -> None:
    before = set(threading.enumerate())
    sb = Sandbox(time_scale=1.0).start()  # would hold it for 60 s
    try:
        hung = HungStart(sb, {"phoneNumber": "+15550100095"})
    finally:
        began = time.monotonic()
        sb.stop()
    assert time.monotonic() - began < 1.0
    assert hung.closed_without_response(within=1.0) < 2.0
    assert_hung(sb.starts()[0], "stopped")
    eventually(
        lambda: not set(threading.enumerate()) - before,
        timeout=1.0,
        what=f"threads to end: {set(threading.enumerate()) - before}",
    )


# --- rate limit ---------------------------------------------------------------------------------


def test_rate_limit_is_a_sliding_window_and_429s_do_not_count() -> None:
    with Sandbox(time_scale=0.05, rate_limit=RateLimit(3, 1.0)) as sb:
        for _ in range(3):
            started(sb, phoneNumber="+15550100001")
        for _ in range(3):
            assert_error(start(sb, phoneNumber="+15550100001"), 429, "rate-limit-error")
        invalid = start(sb, phoneNumber="not a number")
        assert invalid.status_code == 400  # refused bodies are checked before the limit
        first = sb.starts()[0]["t"]
        eventually(lambda: time.monotonic() - first >= 1.0, timeout=2.0, what="window")
        started(sb, phoneNumber="+15550100001")  # the first start left the window
        counted = [s["t"] for s in sb.starts() if s["counted"]]
        assert len(counted) == 4
        assert [s["status"] for s in sb.starts()] == [200] * 3 + [429] * 3 + [400, 200]
        for t in counted:  # never more than 3 in any 1 s window
            assert sum(1 for u in counted if t <= u < t + 1.0) <= 3


# --- webhooks -----------------------------------------------------------------------------------


def test_create_sends_a_signed_test_request_and_returns_the_object(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    webhook = register(sandbox, receiver.url, hmac=WEBHOOK_SECRET, basicAuth="daily:pw")
    assert set(webhook) >= {
        "uuid",
        "url",
        "hmac",
        "basicAuth",
        "retryType",
        "eventTypes",
        "state",
        "failedCount",
        "createdAt",
        "updatedAt",
    }
    assert UUID4.fullmatch(webhook["uuid"])
    assert (webhook["url"], webhook["hmac"]) == (receiver.url, WEBHOOK_SECRET)
    assert (webhook["state"], webhook["failedCount"]) == ("ACTIVE", 0)
    assert webhook["retryType"] == "circuit-breaker"
    (test,) = receiver.received
    assert test.json == {"test": "test"}
    timestamp = test.headers["X-Webhook-Timestamp"]
    assert test.headers["X-Webhook-Signature"] == independent_signature(
        WEBHOOK_SECRET, timestamp, test.raw
    )
    assert test.headers["Authorization"] == "Basic " + base64.b64encode(b"daily:pw").decode()
    listed = requests.get(sandbox.url + "/webhooks", headers=auth(sandbox.api_key)).json()
    assert listed == [webhook]
    one = requests.get(sandbox.url + f"/webhooks/{webhook['uuid']}", headers=auth(sandbox.api_key))
    assert one.json() == webhook


def test_a_generated_secret_is_base64_and_signs_deliveries(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    webhook = register(sandbox, receiver.url)
    assert len(base64.b64decode(webhook["hmac"], validate=True)) >= 16
    sid = started(sandbox, phoneNumber="+15550100000", userId="call-sig")
    eventually(lambda: len(receiver.events(sid)) == 2, what="2 events")
    for got in [*receiver.received]:
        timestamp = got.headers["X-Webhook-Timestamp"]
        assert timestamp.isdigit()
        assert abs(int(timestamp) - time.time()) < 60
        expected = independent_signature(webhook["hmac"], timestamp, got.raw)
        assert hmac.compare_digest(got.headers["X-Webhook-Signature"], expected)


@pytest.mark.parametrize(
    ("status", "delay", "reason"),
    [(500, 0.0, "answered 500"), (204, 0.0, "answered 204"), (200, 0.5, "timed out")],
)
def test_create_fails_unless_the_test_request_gets_a_prompt_200(
    receiver: Receiver, status: int, delay: float, reason: str
) -> None:
    with Sandbox(test_request_timeout=0.25) as sb:
        receiver.answer(status, delay=delay)
        response = post(sb, "/webhooks", {"url": receiver.url})
        assert reason in assert_error(response, 400, "invalid-request-error")
        assert len(receiver.received) == 1
        assert sb.webhooks() == []


def test_create_fails_for_an_unreachable_url(sandbox: Sandbox) -> None:
    port = free_port()  # closed again before the test request
    response = post(sandbox, "/webhooks", {"url": f"http://127.0.0.1:{port}/hook"})
    assert_error(response, 400, "invalid-request-error", "test request")
    (attempt,) = sandbox.deliveries()
    assert (attempt["type"], attempt["ok"]) == ("test", False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "http://127.0.0.1:9/x", "retryType": "sometimes"}, "retryType"),
        ({"url": "http://127.0.0.1:9/x", "eventTypes": ["dialout.rang"]}, "eventTypes"),
        ({"url": "http://127.0.0.1:9/x", "hmac": "not base64!"}, "hmac"),
        ({"url": "http://127.0.0.1:9/x", "colour": "red"}, "colour"),
    ],
)
def test_invalid_webhook_bodies_name_the_field(
    sandbox: Sandbox, body: dict[str, Any], field: str
) -> None:
    info = assert_error(post(sandbox, "/webhooks", body), 400, "invalid-request-error")
    assert field in info
    assert sandbox.deliveries() == []  # refused before any test request


def test_unknown_webhook_is_404_and_delete_removes_it(sandbox: Sandbox, receiver: Receiver) -> None:
    for method in ("GET", "POST", "DELETE"):
        response = requests.request(
            method,
            sandbox.url + "/webhooks/nope",
            json={"url": receiver.url},
            headers=auth(sandbox.api_key),
        )
        assert_error(response, 404, "not-found-error")
    webhook = register(sandbox, receiver.url)
    gone = requests.delete(
        sandbox.url + f"/webhooks/{webhook['uuid']}", headers=auth(sandbox.api_key)
    )
    assert gone.status_code == 200
    assert gone.json()["uuid"] == webhook["uuid"]
    assert sandbox.webhooks() == []
    sid = started(sandbox, phoneNumber="+15550100000")
    eventually(lambda: len(sent_types(sandbox, sid)) == 2, what="events sent")
    assert receiver.events() == []


@pytest.mark.parametrize("with_user", [True, False], ids=["userId", "no-userId"])
def test_envelope_and_payload_shapes(sandbox: Sandbox, receiver: Receiver, with_user: bool) -> None:
    """Without a ``userId`` the payloads have no ``user_id`` key at all: nothing to echo."""
    register(sandbox, receiver.url)
    users = ("call-shape", "call-w") if with_user else (None, None)
    ids = [{"userId": user} if user else {} for user in users]
    dialout_fields = DIALOUT_FIELDS if with_user else DIALOUT_FIELDS - {"user_id"}
    error_fields = dialout_fields - {"destination", "caller_id"} | {"error_msg"}
    sid = started(sandbox, phoneNumber="+15550100002", room="sales-1", **ids[0])
    warn = started(sandbox, sipUri="sip:warning@pbx.example", room="sales-1", **ids[1])
    eventually(lambda: len(receiver.events(sid)) == 2 and len(receiver.events(warn)) == 3)
    post(sandbox, "/rooms/sales-1/dialOut/stop", {"sessionId": warn})
    eventually(lambda: len(receiver.events(warn)) == 4, what="warning call's 4 events")
    got = receiver.events()
    assert len({r.json["id"] for r in got}) == len(got)  # unique per event
    for r in got:
        body = r.json
        assert set(body) == {"version", "type", "id", "payload", "event_ts"}
        assert body["version"] == "1.0.0"
        assert isinstance(body["id"], str) and body["id"]
        assert isinstance(body["event_ts"], float)
        assert abs(body["event_ts"] - time.time()) < 60
        payload = body["payload"]
        assert isinstance(payload["timestamp"], str) and payload["timestamp"].isdigit()
        assert payload["room"] == "sales-1"
        assert payload["domain_id"]
        if body["type"] == "dialout.error":
            assert set(payload) == error_fields
        elif body["type"] == "dialout.warning":
            assert set(payload) == dialout_fields
        else:
            assert set(payload) == dialout_fields | {"origin"}
    pstn = receiver.events(sid)[0].json["payload"]
    assert (pstn["session_id"], pstn.get("user_id")) == (sid, users[0])
    assert pstn["destination"] == "+15550100002"
    assert pstn["caller_id"] and pstn["origin"].startswith("+")
    sip = receiver.events(warn)[0].json["payload"]
    assert (sip.get("user_id"), sip["destination"]) == (users[1], "sip:warning@pbx.example")
    assert [session(sandbox, s)["userId"] for s in (sid, warn)] == list(users)
    assert [a["userId"] for a in sandbox.starts()] == list(users)
    assert receiver.types(warn) == [
        "dialout.connected",
        "dialout.warning",
        "dialout.answered",
        "dialout.stopped",
    ]
    caller = str(uuid.uuid4())
    own = started(sandbox, phoneNumber="+15550100000", callerId=caller)
    eventually(lambda: receiver.events(own), what="own caller id")
    assert receiver.events(own)[0].json["payload"]["caller_id"] == caller


def test_event_types_filter(sandbox: Sandbox, receiver: Receiver) -> None:
    everything = Receiver()
    try:
        register(sandbox, receiver.url, eventTypes=["dialout.answered"])
        register(sandbox, everything.url)
        sid = started(sandbox, phoneNumber="+15550100003")
        all_types = ["dialout.connected", "dialout.answered", "dialout.stopped"]
        eventually(lambda: everything.types(sid) == all_types, what="all events")
        eventually(lambda: receiver.types(sid) == ["dialout.answered"], what="the subscribed one")
        assert len({d["webhook"] for d in sandbox.deliveries()}) == 2
    finally:
        everything.close()


def test_circuit_breaker_fails_after_three_and_update_reactivates(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    webhook = register(sandbox, receiver.url, hmac=WEBHOOK_SECRET)
    receiver.answer(500, times=3)
    sid = started(sandbox, phoneNumber="+15550100003")  # connected, answered, stopped
    url = sandbox.url + f"/webhooks/{webhook['uuid']}"
    failed = eventually(
        lambda: (
            (w := requests.get(url, headers=auth(sandbox.api_key)).json())["state"] == "FAILED"
            and w
        ),
        what="FAILED",
    )
    assert failed["failedCount"] == 3
    assert [r.type for r in receiver.received[1:]] == [
        "dialout.connected",
        "dialout.answered",
        "dialout.stopped",
    ]
    other = started(sandbox, phoneNumber="+15550100003")
    eventually(lambda: session(sandbox, other)["state"] == "stopped", what="second call over")
    assert receiver.events(other) == []  # nothing is sent while FAILED
    attempts = [d for d in sandbox.deliveries() if d["type"] != "test"]
    assert [d["status"] for d in attempts] == [500, 500, 500]
    assert {d["eventId"] for d in attempts} == {e["id"] for e in session(sandbox, sid)["events"]}

    reactivated = post(sandbox, f"/webhooks/{webhook['uuid']}", {"url": receiver.url})
    assert reactivated.status_code == 200
    assert (reactivated.json()["state"], reactivated.json()["failedCount"]) == ("ACTIVE", 0)
    assert receiver.received[-1].json == {"test": "test"}  # the update's test request
    third = started(sandbox, phoneNumber="+15550100000")
    eventually(lambda: len(receiver.events(third)) == 2, what="delivered again")


def test_failed_reactivation_keeps_the_webhook_failed(sandbox: Sandbox, receiver: Receiver) -> None:
    webhook = register(sandbox, receiver.url)
    receiver.answer(503, times=4)  # three events, then the update's test request
    started(sandbox, phoneNumber="+15550100003")
    eventually(lambda: sandbox.webhooks()[0]["state"] == "FAILED", what="FAILED")
    response = post(sandbox, f"/webhooks/{webhook['uuid']}", {"url": receiver.url})
    assert_error(response, 400, "invalid-request-error", "test request")
    assert sandbox.webhooks()[0]["state"] == "FAILED"


def test_a_slow_answer_is_a_failed_delivery(receiver: Receiver) -> None:
    with Sandbox(time_scale=0.05, delivery_timeout=0.2) as sb:
        register(sb, receiver.url)
        receiver.answer(200, delay=0.4)
        sid = started(sb, phoneNumber="+15550100000")
        eventually(lambda: len([d for d in sb.deliveries() if d["eventId"]]) == 2, what="2 tries")
        first, second = (d for d in sb.deliveries() if d["eventId"])
        assert (first["type"], first["ok"]) == ("dialout.connected", False)
        assert "timed out" in first["error"] or "slow" in first["error"]
        assert (second["type"], second["ok"]) == ("dialout.answered", True)
        assert sb.webhooks()[0]["failedCount"] == 0  # a success resets the count
        assert receiver.types(sid)[-1] == "dialout.answered"


def test_exponential_retries_five_times_then_drops(receiver: Receiver) -> None:
    with Sandbox(time_scale=0.001) as sb:  # backoff 0.03, 0.06, 0.12, 0.24, 0.48 s
        register(sb, receiver.url, retryType="exponential")
        receiver.answer(500, times=6)  # the connected event: 1 try + 5 retries, all failing
        receiver.answer(502, times=2)  # the answered event: 2 failures, then delivered
        sid = started(sb, phoneNumber="+15550100000")
        attempts = eventually(
            lambda: (tries := [d for d in sb.deliveries() if d["eventId"]])[8:] and tries,
            what="9 attempts",
        )
        assert [(d["type"], d["attempt"], d["ok"]) for d in attempts] == [
            *[("dialout.connected", n, False) for n in range(1, 7)],
            ("dialout.answered", 1, False),
            ("dialout.answered", 2, False),
            ("dialout.answered", 3, True),
        ]
        gaps = [b["t"] - a["t"] for a, b in pairwise(attempts[:6])]
        assert all(later > earlier for earlier, later in pairwise(gaps))
        assert gaps[0] >= 0.03
        assert len({r.json["id"] for r in receiver.events(sid)[:6]}) == 1  # the same event
        assert sb.webhooks()[0]["state"] == "ACTIVE"  # no circuit breaker here


# --- introspection and reset -------------------------------------------------------------------


def test_introspection_over_http_matches_the_python_api(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    register(sandbox, receiver.url)
    sid = started(sandbox, phoneNumber="+15550100003", userId="call-i")
    eventually(lambda: session(sandbox, sid)["state"] == "stopped", what="hangup")
    eventually(lambda: len(sandbox.deliveries()) == 4, what="test + 3 deliveries")
    base = sandbox.base_url + "/_sandbox"
    assert requests.get(base + "/starts").json() == sandbox.starts()
    assert requests.get(base + "/sessions").json() == sandbox.sessions()
    assert requests.get(base + "/deliveries").json() == sandbox.deliveries()
    assert requests.get(base + "/webhooks").json() == sandbox.webhooks()
    (record,) = sandbox.sessions()
    assert (record["userId"], record["outcome"], record["state"]) == ("call-i", "hangup", "stopped")
    assert [d["type"] for d in sandbox.deliveries()] == ["test", *sent_types(sandbox, sid)]

    assert requests.post(base + "/reset").json() == {"status": "reset"}
    assert (sandbox.starts(), sandbox.sessions(), sandbox.deliveries()) == ([], [], [])
    assert len(sandbox.webhooks()) == 1  # kept unless asked
    requests.post(base + "/reset", json={"webhooks": True})
    assert sandbox.webhooks() == []


def test_reset_cancels_pending_timelines(receiver: Receiver) -> None:
    with Sandbox(time_scale=0.5) as sb:
        register(sb, receiver.url)
        started(sb, phoneNumber="+15550100000")  # connected due at 0.15 s
        sb.reset()
        time.sleep(0.3)
        assert receiver.events() == []
        assert sb.sessions() == []


# --- the command line ---------------------------------------------------------------------------


def test_cli_arguments() -> None:
    args = build_parser().parse_args(["sandbox", "--rate-limit", "3/1s", "--time-scale", "0.1"])
    assert (args.rate_limit, args.time_scale, args.port) == (
        RateLimit(3, 1.0),
        0.1,
        defaults.SANDBOX_PORT,
    )
    chaos = build_parser().parse_args(["sandbox", "--webhook-copies", "3", "--webhook-delay", "2"])
    assert (chaos.webhook_copies, chaos.webhook_delay) == (3, 2.0)
    for bad in (
        ["--rate-limit", "fast"],
        ["--time-scale", "-1"],
        ["--webhook-copies", "0"],
        ["--webhook-delay", "-1"],
    ):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["sandbox", *bad])


def test_cli_runs_registers_a_webhook_and_stops_on_sigterm(receiver: Receiver) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DAILY_API_KEY": "cli-key"}
    command = [sys.executable, "-m", "telephony", "sandbox", "--port", str(port)]
    command += ["--webhook-url", receiver.url, "--webhook-secret", WEBHOOK_SECRET]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def hooks() -> Any:
            try:
                return requests.get(base + "/_sandbox/webhooks", timeout=1).json()
            except requests.ConnectionError:
                return None

        (webhook,) = eventually(hooks, timeout=15, what="the CLI sandbox")
        assert (webhook["url"], webhook["hmac"]) == (receiver.url, WEBHOOK_SECRET)
        response = requests.post(
            base + "/v1/rooms/r/dialOut/start",
            json={"phoneNumber": "+15550100000"},
            headers=auth("cli-key"),
            timeout=5,
        )
        assert response.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert f"{base}/v1" in out


# --- read-back: the API and webhook log, room presence ------------------------------------------


def logs(sb: Sandbox, **query: Any) -> requests.Response:
    return requests.get(f"{sb.url}/logs/api", params=query, headers=auth(sb.api_key), timeout=5)


def test_the_log_holds_api_requests_and_webhook_deliveries(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    register(sandbox, receiver.url)
    receiver.answer(500)  # the first event fails once: attempts are logged, not only successes
    session_id = started(sandbox, userId="u-log", phoneNumber="+15550100003")  # hangs up
    eventually(lambda: "dialout.stopped" in receiver.types(session_id), 5, "the hang-up")

    hooks = logs(sandbox, source="webhook", limit=100).json()
    entries = list(reversed(hooks["data"]))  # the log is newest first
    assert hooks["total_count"] == len(entries)
    sent = [json.loads(e["request"]) for e in entries]
    assert "type" not in sent[0]  # the test request of the registration
    assert [b["type"] for b in sent[1:]] == [
        "dialout.connected", "dialout.answered", "dialout.stopped"
    ]  # fmt: skip
    assert entries[1]["status"] == 500 and entries[1]["url"] == receiver.url  # tried: logged
    assert [e["status"] for e in entries[2:]] == [200, 200]

    api = logs(sandbox, source="api", url="dialOut/start").json()["data"]
    assert [(e["method"], e["status"]) for e in api] == [("POST", 200)]
    assert json.loads(api[0]["request"])["userId"] == "u-log"
    assert json.loads(api[0]["response"])["sessionId"] == session_id

    first, *rest = logs(sandbox, source="webhook", limit=2).json()["data"]
    after = logs(sandbox, source="webhook", starting_after=first["id"], limit=100).json()["data"]
    assert after[0] == rest[0] and len(after) == len(hooks["data"]) - 1
    assert_error(logs(sandbox, source="nope"), 400, "invalid-request-error", "source")
    assert_error(logs(sandbox, limit="0"), 400, "invalid-request-error", "limit")


def test_presence_shows_answered_legs_as_late_as_daily_does() -> None:
    lag = 0.5  # seconds, after scaling: 10 s at time scale 0.05
    with Sandbox(api_key="k", time_scale=0.05, presence_lag=10.0) as sb:

        def present(user_id: str | None = None) -> list[str]:
            params = {"userId": user_id} if user_id else {}
            answer = requests.get(f"{sb.url}/rooms/room-1/presence", params=params,
                                  headers=auth("k"), timeout=5)  # fmt: skip
            assert answer.status_code == 200
            body = answer.json()
            assert body["total_count"] == len(body["data"])
            return [leg["userId"] for leg in body["data"]]

        session_id = started(sb, userId="u-present", phoneNumber="+15550100000")
        started(sb, userId="u-ringing", phoneNumber="+15550100001")  # rings: never in the room
        answered = eventually(
            lambda: session(sb, session_id)["state"] == "answered" and time.monotonic(), 5
        )
        assert present() == []  # answered, but presence trails by the lag
        eventually(lambda: present() == ["u-present"], 5, "the answered leg to show")
        assert time.monotonic() - answered >= lag - 0.05
        assert present("u-ringing") == [] and present("u-present") == ["u-present"]
        every = requests.get(f"{sb.url}/presence", headers=auth("k"), timeout=5).json()
        assert [leg["userId"] for leg in every["room-1"]] == ["u-present"]  # by room

        post(sb, "/rooms/room-1/dialOut/stop", {"sessionId": session_id})
        eventually(lambda: session(sb, session_id)["state"] == "stopped", 5, "the stop")
        ended = time.monotonic()
        assert present() == ["u-present"]  # gone, but not yet as far as presence tells
        eventually(lambda: present() == [], 5, "the ended leg to leave")
        assert time.monotonic() - ended >= lag - 0.05


def test_a_lost_final_webhook_leaves_only_presence_to_tell(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    register(sandbox, receiver.url)
    session_id = started(sandbox, userId="u-lost", phoneNumber="+15550100096")
    eventually(lambda: session(sandbox, session_id)["state"] == "stopped", 5, "the far end's end")
    eventually(lambda: len(receiver.types(session_id)) == 2, 5, "the deliveries")
    assert receiver.types(session_id) == ["dialout.connected", "dialout.answered"]
    hooks = logs(sandbox, source="webhook", limit=100).json()["data"]
    assert "dialout.stopped" not in {json.loads(e["request"]).get("type") for e in hooks}

    def rooms() -> dict[str, Any]:
        answer = requests.get(f"{sandbox.url}/presence", headers=auth(sandbox.api_key), timeout=5)
        return dict(answer.json())

    eventually(lambda: rooms() == {}, 5, "the leg to leave presence")

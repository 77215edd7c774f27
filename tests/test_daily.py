"""The Daily client against real sockets: tiny misbehaving servers, then the sandbox.

Every failure class is produced by a real exchange on 127.0.0.1, never by patching requests:
what matters is how requests/urllib3 really report a refused connect, a reset, a timeout.
"""

from __future__ import annotations

import email.utils
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from conftest import (
    Behaviour,
    RawServer,
    Request,
    answer,
    hang_up,
    ok,
    reset,
    send_raw,
    silent,
    wait_for,
)
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from telephony import errors
from telephony.config import ConfigError, Secret, Settings
from telephony.daily import DailyClient

KEY = "k-very-secret-daily-key"


@pytest.fixture
def server() -> Iterator[Callable[[Behaviour], RawServer]]:
    servers: list[RawServer] = []

    def make(behave: Behaviour) -> RawServer:
        servers.append(RawServer(behave))
        return servers[-1]

    yield make
    for made in servers:
        made.close()


@pytest.fixture
def client() -> Iterator[Callable[..., DailyClient]]:
    clients: list[DailyClient] = []

    def make(url: str, **options: Any) -> DailyClient:
        options.setdefault("connect_timeout", 1.0)
        options.setdefault("read_timeout", 2.0)
        clients.append(DailyClient(url, options.pop("api_key", Secret(KEY)), **options))
        return clients[-1]

    yield make
    for made in clients:
        made.close()


START = {"phoneNumber": "+15550100000", "userId": "call-1"}


# --- transport failures: sent or not sent ---------------------------------------------------------


def test_read_timeout_is_ambiguous_and_not_retried(server: Any, client: Any) -> None:
    srv = server(silent)
    daily = client(srv.url, read_timeout=0.3)
    with pytest.raises(errors.DailyAmbiguousError) as caught:
        daily.start_dialout("room", START)
    assert isinstance(caught.value.__cause__, requests.ReadTimeout)
    assert [r.path for r in srv.requests] == ["/v1/rooms/room/dialOut/start"]


@pytest.mark.parametrize("behave", [hang_up, reset], ids=["fin", "rst"])
def test_drop_after_request_is_ambiguous_and_not_retried(
    server: Any, client: Any, behave: Behaviour
) -> None:
    srv = server(behave)
    with pytest.raises(errors.DailyAmbiguousError):
        client(srv.url).start_dialout("room", START)
    assert len(srv.requests) == 1
    assert srv.connections == 1


def test_caller_session_cannot_add_retries(server: Any, client: Any) -> None:
    """A caller's session with retrying adapters still gets exactly one attempt from us."""
    session = requests.Session()
    retrying = HTTPAdapter(max_retries=Retry(total=3, allowed_methods=None, backoff_factor=0))
    session.mount("http://", retrying)
    srv = server(hang_up)
    with pytest.raises(errors.DailyAmbiguousError):
        client(srv.url, session=session).start_dialout("room", START)
    assert len(srv.requests) == 1
    session.close()


@pytest.mark.parametrize(
    "data",
    [
        b"garbage\r\n\r\n",
        b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"ok": "tr',
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["garbage", "truncated", "bad-chunk"],
)
def test_garbled_answer_is_ambiguous(server: Any, client: Any, data: bytes) -> None:
    srv = server(send_raw(data))
    with pytest.raises(errors.DailyAmbiguousError):
        client(srv.url).start_dialout("room", START)
    assert len(srv.requests) == 1


@pytest.mark.parametrize(
    "body",
    [b"<html>ok</html>", b'{"ok": "true"}', b'{"ok": "true", "sessionId": ""}', b"[]"],
    ids=["not-json", "no-session", "empty-session", "not-object"],
)
def test_start_success_without_session_id_is_ambiguous(
    server: Any, client: Any, body: bytes
) -> None:
    srv = server(answer("200 OK", body))
    with pytest.raises(errors.DailyAmbiguousError, match="dialOut/start"):
        client(srv.url).start_dialout("room", START)


def test_success_without_body_is_fine_where_no_answer_is_needed(server: Any, client: Any) -> None:
    srv = server(answer("200 OK", b"", keep=True))
    daily = client(srv.url)
    daily.stop_dialout("room", "s-1")
    daily.delete_webhook("w-1")
    assert [r.method for r in srv.requests] == ["POST", "DELETE"]
    with pytest.raises(errors.DailyAmbiguousError):
        daily.get_webhook("w-1")


def test_refused_connection_is_connect_error(client: Any) -> None:
    # Bound but not listening: the kernel answers the SYN with a RST, and nobody can take the
    # port while we hold it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        with pytest.raises(errors.DailyConnectError) as caught:
            client(f"http://127.0.0.1:{port}/v1").start_dialout("room", START)
    assert not isinstance(caught.value, errors.DailyAmbiguousError)
    assert caught.value.retryable


def test_connect_timeout_is_connect_error(client: Any) -> None:
    """A listener whose accept queue is full drops new SYNs, so connecting times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers: list[socket.socket] = []
        try:
            for _ in range(64):
                probe = socket.socket()
                probe.settimeout(0.2)
                try:
                    probe.connect(address)
                except TimeoutError:
                    probe.close()
                    break
                fillers.append(probe)
            else:
                pytest.skip("this kernel accepts past a full backlog; no local connect timeout")
            daily = client(f"http://127.0.0.1:{address[1]}/v1", connect_timeout=0.2)
            with pytest.raises(errors.DailyConnectError) as caught:
                daily.start_dialout("room", START)
            assert isinstance(caught.value.__cause__, requests.ConnectTimeout)
        finally:
            for filler in fillers:
                filler.close()


# --- error answers ------------------------------------------------------------------------------


def test_429_carries_retry_after_seconds(server: Any, client: Any) -> None:
    body = b'{"error": "rate-limit-error", "info": "slow down"}'
    srv = server(answer("429 Too Many Requests", body, "Retry-After: 2"))
    with pytest.raises(errors.RateLimitedError) as caught:
        client(srv.url).start_dialout("room", START)
    assert caught.value.retry_after == 2
    assert (caught.value.status, caught.value.type, caught.value.info) == (
        429,
        "rate-limit-error",
        "slow down",
    )


def test_retry_after_as_http_date(server: Any, client: Any) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    srv = server(answer("503 Service Unavailable", b"{}", f"Retry-After: {when}"))
    with pytest.raises(errors.ServerError) as caught:
        client(srv.url).start_dialout("room", START)
    assert caught.value.retry_after is not None
    assert 25 <= caught.value.retry_after <= 31


@pytest.mark.parametrize("value", ["soon", "", "nan"])
def test_unreadable_retry_after_is_ignored(server: Any, client: Any, value: str) -> None:
    srv = server(answer("429 Too Many Requests", b"", f"Retry-After: {value}"))
    with pytest.raises(errors.RateLimitedError) as caught:
        client(srv.url).start_dialout("room", START)
    assert caught.value.retry_after is None


def test_non_json_502_is_server_error(server: Any, client: Any) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    srv = server(answer("502 Bad Gateway", page, "Content-Type: text/html"))
    with pytest.raises(errors.ServerError) as caught:
        client(srv.url).start_dialout("room", START)
    assert caught.value.status == 502
    assert caught.value.type is None
    assert "502 Bad Gateway" in (caught.value.info or "")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        ("404 Not Found", b"{}", errors.NotFoundError),
        ("404 Not Found", b"", errors.NotFoundError),
        ("401 Unauthorized", b'["x"]', errors.AuthenticationError),
        ("400 Bad Request", b"TEMPORARILY_NOT_AVAILABLE", errors.TemporarilyNotAvailableError),
        ("400 Bad Request", b'{"error": "invalid-request-error"}', errors.InvalidRequestError),
        ("400 Bad Request", b'{"info": 42}', errors.InvalidRequestError),
        ("302 Found", b"", errors.InvalidRequestError),
    ],
)
def test_error_bodies_of_any_shape_are_classified(
    server: Any, client: Any, status: str, body: bytes, expected: type[Exception]
) -> None:
    srv = server(answer(status, body, "Location: http://127.0.0.1:9/elsewhere"))
    with pytest.raises(expected):
        client(srv.url).stop_dialout("room", "s-1")
    assert len(srv.requests) == 1  # a redirect is not followed


# --- the wire format, the pool, the secret ------------------------------------------------------


def test_requests_on_the_wire(server: Any, client: Any) -> None:
    srv = server(ok({"ok": "true", "sessionId": "s-1"}))
    daily = client(srv.url + "/")
    assert daily.start_dialout("a/b c", {**START, "video": False}) == "s-1"
    daily.stop_dialout("a/b c", "s-1")
    daily.send_dtmf("r", "s-1", "12#", digit_duration_ms=100, method="sip-info")
    daily.send_dtmf("r", "s-1", "9")
    daily.sip_call_transfer("r", "s-1", "+15550100000", caller_id="c", extension="12")
    daily.sip_call_transfer("r", "s-1", "sip:x@y", wait_before_extension_dial_sec=0)
    daily.sip_refer("r", "s-1", "sip:x@y")
    seen = [(r.method, r.path, r.json()) for r in srv.requests]
    assert seen == [
        ("POST", "/v1/rooms/a%2Fb%20c/dialOut/start", {**START, "video": False}),
        ("POST", "/v1/rooms/a%2Fb%20c/dialOut/stop", {"sessionId": "s-1"}),
        (
            "POST",
            "/v1/rooms/r/dialOut/sendDTMF",
            {"sessionId": "s-1", "tones": "12#", "digitDurationMs": 100, "method": "sip-info"},
        ),
        ("POST", "/v1/rooms/r/dialOut/sendDTMF", {"sessionId": "s-1", "tones": "9"}),
        (
            "POST",
            "/v1/rooms/r/sipCallTransfer",
            {"sessionId": "s-1", "toEndPoint": "+15550100000", "callerId": "c", "extension": "12"},
        ),
        (
            "POST",
            "/v1/rooms/r/sipCallTransfer",
            {"sessionId": "s-1", "toEndPoint": "sip:x@y", "waitBeforeExtensionDialSec": 0},
        ),
        ("POST", "/v1/rooms/r/sipRefer", {"sessionId": "s-1", "toEndPoint": "sip:x@y"}),
    ]
    assert {r.headers["authorization"] for r in srv.requests} == {f"Bearer {KEY}"}
    assert {r.headers["content-type"] for r in srv.requests} == {"application/json"}
    assert srv.connections == 1  # pooled: one keep-alive connection for all seven


def test_webhook_requests_on_the_wire(server: Any, client: Any) -> None:
    srv = server(ok({"uuid": "w 1", "url": "http://x"}))
    daily = client(srv.url)
    daily.create_webhook(
        "http://x", hmac=Secret("aGk="), event_types=["dialout.answered"], basic_auth="u:p"
    )
    daily.update_webhook("w 1", event_types=["a"], retry_type="exponential", hmac=Secret("aGk="))
    daily.get_webhook("w 1")
    assert [(r.method, r.path, r.body and r.json()) for r in srv.requests] == [
        (
            "POST",
            "/v1/webhooks",
            {
                "url": "http://x",
                "hmac": "aGk=",
                "eventTypes": ["dialout.answered"],
                "basicAuth": "u:p",
            },
        ),
        (
            "POST",
            "/v1/webhooks/w%201",
            {"eventTypes": ["a"], "retryType": "exponential", "hmac": "aGk="},
        ),
        ("GET", "/v1/webhooks/w%201", b""),
    ]


def test_key_never_shown(server: Any, client: Any, caplog: pytest.LogCaptureFixture) -> None:
    srv = server(answer("401 Unauthorized", b'{"error": "authentication-error"}'))
    daily = client(srv.url)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(errors.AuthenticationError) as caught:
        daily.start_dialout("room", START)
    hung = client(server(hang_up).url)
    with pytest.raises(errors.DailyAmbiguousError) as dropped:
        hung.stop_dialout("room", "s-1")
    shown = " ".join(
        [repr(daily), str(daily), str(caught.value), repr(caught.value), str(dropped.value)]
        + [record.getMessage() for record in caplog.records]
    )
    assert KEY not in shown
    assert "POST /rooms/room/dialOut/start -> 401 in" in caplog.text
    assert "POST /rooms/room/dialOut/stop -> " in caplog.text


def test_constructor_refuses_unusable_settings() -> None:
    with pytest.raises(ValueError, match="URL"):
        DailyClient("api.daily.co/v1", KEY)
    with pytest.raises(ValueError, match="key"):
        DailyClient("http://127.0.0.1:9/v1", Secret(""))
    with pytest.raises(ValueError, match="timeout"):
        DailyClient("http://127.0.0.1:9/v1", KEY, read_timeout=0)
    with pytest.raises(ConfigError, match="DAILY_API_KEY"):
        DailyClient.from_settings(Settings())


def test_from_settings(server: Any) -> None:
    srv = server(silent)
    settings = Settings(daily_api_url=srv.url, daily_api_key=Secret(KEY), daily_read_timeout=0.2)
    with DailyClient.from_settings(settings) as daily:
        assert daily.base_url == srv.url
        assert daily.timeout[1] == 0.2
        started = time.monotonic()
        with pytest.raises(errors.DailyAmbiguousError):
            daily.stop_dialout("room", "s-1")
        assert time.monotonic() - started < 1.5


# --- against the sandbox: every error class, every success path ---------------------------------

ANSWERS = "+15550100000"
HOOK_SECRET = "dGVzdC13ZWJob29rLXNlY3JldC0x"  # base64 of "test-webhook-secret-1"
OTHER_SECRET = "dGVzdC13ZWJob29rLXNlY3JldC0y"


def session_of(sandbox: Any, session_id: str) -> dict[str, Any]:
    return next(s for s in sandbox.sessions() if s["sessionId"] == session_id)


@pytest.fixture
def daily(sandbox: Any, client: Any) -> DailyClient:
    made: DailyClient = client(sandbox.url, api_key=sandbox.api_key)
    return made


@pytest.mark.parametrize(
    ("room", "body", "expected", "status"),
    [
        ("r", {"phoneNumber": ANSWERS, "sipUri": "sip:a@b"}, errors.InvalidRequestError, 400),
        ("r", {"phoneNumber": ANSWERS, "colour": "red"}, errors.InvalidRequestError, 400),
        ("r", {"phoneNumber": "+15550100090"}, errors.NotAllowedError, 403),
        ("not-hosting", {"phoneNumber": ANSWERS}, errors.NotFoundError, 404),
        ("r", {"phoneNumber": "+15550100091"}, errors.DialoutInProgressError, 400),
        ("r", {"phoneNumber": "+15550100041"}, errors.TemporarilyNotAvailableError, 400),
        ("r", {"phoneNumber": "+15550100051"}, errors.TemporarilyNotAvailableError, 503),
        ("r", {"phoneNumber": "+15550100092"}, errors.ServerError, 500),
    ],
    ids=[
        "both-destinations",
        "unknown-key",
        "not-allowed",
        "not-hosting",
        "in-progress",
        "unavailable-400",
        "unavailable-503",
        "server-error",
    ],
)
def test_start_refusals(
    sandbox: Any,
    daily: DailyClient,
    room: str,
    body: dict[str, Any],
    expected: type[errors.DailyAPIError],
    status: int,
) -> None:
    with pytest.raises(expected) as caught:
        daily.start_dialout(room, body)
    assert type(caught.value) is expected
    assert caught.value.status == status
    assert caught.value.type and caught.value.info
    assert not any(s["destination"] == body["phoneNumber"] for s in sandbox.sessions())


def test_a_full_room_is_a_wait_not_a_refusal(client: Any) -> None:
    """The sixth leg in a room: its own class, retryable (it succeeds once a leg ends)."""
    from telephony.config import RateLimit
    from telephony.sandbox.server import Sandbox

    with Sandbox(time_scale=0.05, rate_limit=RateLimit(100, 1.0), room_legs=2) as sb:
        daily: DailyClient = client(sb.url, api_key=sb.api_key)
        for n in range(2):
            daily.start_dialout("r", {"phoneNumber": ANSWERS, "userId": f"u{n}"})
        with pytest.raises(errors.RoomFullError) as caught:
            daily.start_dialout("r", {"phoneNumber": ANSWERS, "userId": "u2"})
        assert caught.value.retryable and caught.value.status == 400
        assert daily.start_dialout("r2", {"phoneNumber": ANSWERS, "userId": "u2"})


@pytest.mark.parametrize("number", ["+15550100042", "+15550100052"])
def test_temporarily_unavailable_passes_after_refusals(daily: DailyClient, number: str) -> None:
    body = {"phoneNumber": number, "userId": "call-tna"}
    for _ in range(2):
        with pytest.raises(errors.TemporarilyNotAvailableError) as caught:
            daily.start_dialout("r", body)
        assert caught.value.retryable
    assert daily.start_dialout("r", body)


def test_wrong_key_is_authentication_error(sandbox: Any, client: Any) -> None:
    wrong = client(sandbox.url, api_key="not-the-key")
    with pytest.raises(errors.AuthenticationError) as caught:
        wrong.start_dialout("r", {"phoneNumber": ANSWERS})
    assert caught.value.status == 401
    with pytest.raises(errors.AuthenticationError):
        wrong.list_webhooks()
    assert sandbox.sessions() == []


def test_rate_limit(client: Any) -> None:
    from telephony.config import RateLimit
    from telephony.sandbox.server import Sandbox

    with Sandbox(api_key="k", time_scale=0.05, rate_limit=RateLimit(1, 5.0)) as limited:
        daily = client(limited.url, api_key="k")
        daily.start_dialout("r", {"phoneNumber": ANSWERS})
        with pytest.raises(errors.RateLimitedError) as caught:
            daily.start_dialout("r", {"phoneNumber": ANSWERS})
        assert (caught.value.status, caught.value.type) == (429, "rate-limit-error")
        assert len(limited.sessions()) == 1


@pytest.mark.parametrize(
    ("number", "read_timeout"),
    [("+15550100069", 0.15), ("+15550100093", 2.0)],
    ids=["slow", "drop"],
)
def test_ambiguous_start_did_place_the_call(
    sandbox: Any, client: Any, number: str, read_timeout: float
) -> None:
    """The reason ambiguity exists: the start failed for us, yet the phone rings."""
    daily = client(sandbox.url, api_key=sandbox.api_key, read_timeout=read_timeout)
    with pytest.raises(errors.DailyAmbiguousError):
        daily.start_dialout("r", {"phoneNumber": number, "userId": "call-amb"})
    placed = wait_for(lambda: [s for s in sandbox.sessions() if s["userId"] == "call-amb"])
    assert len(placed) == 1
    assert len(sandbox.starts()) == 1


def test_stopped_sandbox_is_connect_error(client: Any) -> None:
    from telephony.sandbox.server import Sandbox

    with Sandbox(api_key="k") as gone:
        url = gone.url
    with pytest.raises(errors.DailyConnectError):
        client(url, api_key="k").start_dialout("r", {"phoneNumber": ANSWERS})


def test_calls_on_unknown_sessions_are_not_found(daily: DailyClient) -> None:
    with pytest.raises(errors.NotFoundError, match="No dialout to stop"):
        daily.stop_dialout("r", "7d208e2a-0000-4000-8000-000000000000")
    with pytest.raises(errors.NotFoundError):
        daily.send_dtmf("r", "7d208e2a-0000-4000-8000-000000000000", "1")
    with pytest.raises(errors.NotFoundError):
        daily.stop_dialout("not-hosting", "7d208e2a-0000-4000-8000-000000000000")


def test_invalid_dtmf_is_invalid_request(daily: DailyClient) -> None:
    session_id = daily.start_dialout("r", {"phoneNumber": ANSWERS})
    with pytest.raises(errors.InvalidRequestError):
        daily.send_dtmf("r", session_id, "xyz")
    with pytest.raises(errors.InvalidRequestError):
        daily.send_dtmf("r", session_id, "1", digit_duration_ms=5)


def test_call_control_success(sandbox: Any, daily: DailyClient) -> None:
    first = daily.start_dialout("r", {"phoneNumber": ANSWERS, "userId": "call-a"})
    second = daily.start_dialout("r", {"sipUri": "sip:answer@example.com", "userId": "call-b"})
    assert first != second
    wait_for(lambda: all(session_of(sandbox, s)["state"] == "answered" for s in (first, second)))

    daily.send_dtmf("r", first, "12#")
    daily.send_dtmf("r", first, "9", digit_duration_ms=100, method="sip-info")
    assert [
        (d["tones"], d["digitDurationMs"], d["method"]) for d in session_of(sandbox, first)["dtmf"]
    ] == [("12#", None, None), ("9", 100, "sip-info")]

    daily.sip_call_transfer("r", first, "+15550100001")
    daily.sip_refer("r", second, "sip:desk@example.com")
    assert [(t["toEndPoint"], t["refer"]) for t in session_of(sandbox, first)["transfers"]] == [
        ("+15550100001", False)
    ]
    assert [(t["toEndPoint"], t["refer"]) for t in session_of(sandbox, second)["transfers"]] == [
        ("sip:desk@example.com", True)
    ]

    third = daily.start_dialout("r", {"phoneNumber": "+15550100001"})
    wait_for(lambda: session_of(sandbox, third)["state"] == "connected")
    daily.stop_dialout("r", third)
    wait_for(lambda: session_of(sandbox, third)["state"] == "stopped")


def test_webhook_management(server: Any, daily: DailyClient) -> None:
    from telephony.signature import decode_secret, verify

    receiver = server(ok({}))
    url = receiver.url + "/webhooks/daily"
    created = daily.create_webhook(
        url, hmac=Secret(HOOK_SECRET), event_types=["dialout.answered"], retry_type="exponential"
    )
    test_request = receiver.requests[-1]
    assert verify(
        decode_secret(HOOK_SECRET),
        test_request.headers.get("x-webhook-timestamp"),
        test_request.headers.get("x-webhook-signature"),
        test_request.body,
    )
    uuid = created["uuid"]
    assert (created["url"], created["state"], created["retryType"]) == (
        url,
        "ACTIVE",
        "exponential",
    )
    assert [hook["uuid"] for hook in daily.list_webhooks()] == [uuid]
    assert daily.get_webhook(uuid) == created

    updated = daily.update_webhook(uuid, event_types=["dialout.answered", "dialout.stopped"])
    assert updated["uuid"] == uuid
    assert updated["eventTypes"] == ["dialout.answered", "dialout.stopped"]
    assert daily.get_webhook(uuid)["eventTypes"] == updated["eventTypes"]

    daily.delete_webhook(uuid)
    assert daily.list_webhooks() == []
    with pytest.raises(errors.NotFoundError):
        daily.get_webhook(uuid)
    with pytest.raises(errors.NotFoundError):
        daily.delete_webhook(uuid)


def test_webhook_refused_when_receiver_does_not_answer_200(server: Any, daily: DailyClient) -> None:
    receiver = server(answer("500 Internal Server Error", b""))
    with pytest.raises(errors.InvalidRequestError, match="test request"):
        daily.create_webhook(receiver.url + "/hook", hmac=HOOK_SECRET)
    assert daily.list_webhooks() == []


def test_ensure_webhook_is_idempotent(server: Any, daily: DailyClient) -> None:
    receiver = server(ok({}))
    url = receiver.url + "/webhooks/daily"
    created = daily.ensure_webhook(url, Secret(HOOK_SECRET), event_types=["dialout.answered"])
    tests_sent = len(receiver.requests)
    assert tests_sent == 1

    again = daily.ensure_webhook(url, HOOK_SECRET, event_types=["dialout.answered"])
    assert again == created
    assert len(receiver.requests) == tests_sent  # nothing changed, so Daily was not touched

    rotated = daily.ensure_webhook(url, OTHER_SECRET, event_types=["dialout.answered"])
    assert (rotated["uuid"], rotated["hmac"]) == (created["uuid"], OTHER_SECRET)
    widened = daily.ensure_webhook(url, OTHER_SECRET, event_types=["dialout.stopped"])
    assert (widened["uuid"], widened["eventTypes"]) == (created["uuid"], ["dialout.stopped"])
    assert len(receiver.requests) == tests_sent + 2
    assert len(daily.list_webhooks()) == 1

    elsewhere = daily.ensure_webhook(receiver.url + "/other", HOOK_SECRET)
    assert elsewhere["uuid"] != created["uuid"]
    assert len(daily.list_webhooks()) == 2


def test_ensure_webhook_reactivates_a_failed_one(
    sandbox: Any, server: Any, daily: DailyClient
) -> None:
    failing = threading.Event()
    healthy = answer("200 OK", b"{}")
    broken = answer("500 Internal Server Error", b"")

    def behave(conn: socket.socket, request: Request, closing: threading.Event) -> bool:
        events_fail = failing.is_set() and b'"type"' in request.body
        return (broken if events_fail else healthy)(conn, request, closing)

    url = server(behave).url + "/webhooks/daily"
    created = daily.ensure_webhook(url, HOOK_SECRET)
    failing.set()
    daily.start_dialout("r", {"phoneNumber": "+15550100003"})  # connected, answered, stopped
    wait_for(lambda: daily.get_webhook(created["uuid"])["state"] == "FAILED")

    failing.clear()
    revived = daily.ensure_webhook(url, HOOK_SECRET)
    assert (revived["uuid"], revived["state"]) == (created["uuid"], "ACTIVE")
    assert daily.ensure_webhook(url, HOOK_SECRET)["state"] == "ACTIVE"

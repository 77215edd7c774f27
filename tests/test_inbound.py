"""The webhook receiver over real HTTP: signatures, the test request, every kind of bad input."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from conftest import API_TOKEN
from support.keys import redis_dump

from telephony import defaults
from telephony.store import CallStore, Change


def envelope(kind: str, event_id: str, **payload: Any) -> bytes:
    body = {"version": "1.0.0", "type": kind, "id": event_id, "payload": payload, "event_ts": 1.5}
    return json.dumps(body).encode()


def queue_call(store: CallStore, call_id: str) -> None:
    store.apply(
        Change(
            trigger="queue",
            event="call.queued",
            source="api",
            call_id=call_id,
            create={"kind": "dialout", "room": "sales-1", "destination": "+15550100000"},
            mode="new",
        )
    )


@pytest.fixture
def store(app: Any) -> CallStore:
    found: CallStore = app.extensions["telephony"].store
    return found


def post(web: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{web}/webhooks/daily", data=body, headers=headers, timeout=5)


def test_signed_event_moves_the_call(web: str, store: CallStore, sign_webhook: Any) -> None:
    queue_call(store, "call-1")
    body = envelope(
        "dialout.answered",
        "evt-1",
        user_id="call-1",
        session_id="s-1",
        timestamp="1728023426",
        room="sales-1",
    )
    response = post(web, body, sign_webhook(body))
    assert response.status_code == 200
    assert response.json() == {"ok": True, "status": "applied"}
    call = store.get("call-1")
    assert call is not None
    assert (call["state"], call["sessionId"]) == ("answered", "s-1")
    assert call["history"][-1]["at"] == "2024-10-04T06:30:26.000Z"


def test_duplicate_is_applied_once(web: str, store: CallStore, sign_webhook: Any) -> None:
    queue_call(store, "call-2")
    body = envelope("dialout.connected", "evt-dup", user_id="call-2", session_id="s-2")
    assert post(web, body, sign_webhook(body)).json()["status"] == "applied"
    assert post(web, body, sign_webhook(body)).json()["status"] == "duplicate"
    call = store.get("call-2")
    assert call is not None
    assert [h["event"] for h in call["history"]] == ["call.queued", "dialout.connected"]


def test_every_webhook_id_is_recorded_once_known_call_or_not(
    web: str, store: CallStore, sign_webhook: Any
) -> None:
    """An event for no known call (kept on the feed alone) and one for a session not yet
    known (held), each delivered three times: recorded once, held once."""
    orphan = envelope("dialout.warning", "evt-orphan", user_id="", session_id="")
    unknown = envelope("dialout.connected", "evt-unknown", session_id="s-not-yet")
    for body, first in ((orphan, "orphan"), (unknown, "held")):
        statuses = [post(web, body, sign_webhook(body)).json()["status"] for _ in range(3)]
        assert statuses == [first, "duplicate", "duplicate"]
    feed = [e for e in store.feed(0, 500) if e["event"] == "dialout.warning"]
    assert len(feed) == 1
    assert store.redis.llen(store.keys.pending("s-not-yet")) == 1


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: h.pop("X-Webhook-Signature"),
        lambda h: h.pop("X-Webhook-Timestamp"),
        lambda h: h.update({"X-Webhook-Signature": "AAAA" + h["X-Webhook-Signature"][4:]}),
        lambda h: h.update({"X-Webhook-Timestamp": "1728023427"}),
        lambda h: h.update({"X-Webhook-Signature": "not base64 at all"}),
    ],
    ids=["no-signature", "no-timestamp", "wrong-signature", "other-timestamp", "garbage"],
)
def test_forged_webhooks_are_refused(
    web: str, store: CallStore, sign_webhook: Any, mutate: Any
) -> None:
    queue_call(store, "call-3")
    body = envelope("dialout.answered", "evt-3", user_id="call-3", session_id="s-3")
    headers = sign_webhook(body)
    mutate(headers)
    response = post(web, body, headers)
    assert response.status_code == 401
    assert response.json()["error"] == "authentication-error"
    assert store.state("call-3") == "queued"


def test_body_changed_after_signing_is_refused(web: str, sign_webhook: Any) -> None:
    body = envelope("dialout.answered", "evt-4", user_id="x")
    headers = sign_webhook(body)
    assert post(web, body.replace(b'"x"', b'"y"'), headers).status_code == 401


def test_other_secret_is_refused(web: str, sign_webhook: Any) -> None:
    body = envelope("dialout.answered", "evt-5", user_id="x")
    other = "b3RoZXItc2VjcmV0LWJ5dGVzLWZvci10ZXN0aW5nISE="
    assert post(web, body, sign_webhook(body, secret=other)).status_code == 401


@pytest.mark.parametrize("body", [b'{"test": "test"}', b"{}", b'{"type": null, "id": "x"}'])
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_test_request_is_acknowledged_and_changes_nothing(
    web: str, store: CallStore, sign_webhook: Any, body: bytes, signed: bool
) -> None:
    """Daily's test request (no event ``type``) is answered 200 whether or not it is signed,
    or Daily could never register the webhook; it leaves every key as it was."""
    queue_call(store, "call-t")
    before = redis_dump(store.redis, f"{store.settings.key_prefix}*")
    headers = sign_webhook(body) if signed else {"Content-Type": "application/json"}
    response = post(web, body, headers)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "status": "test"}
    assert redis_dump(store.redis, f"{store.settings.key_prefix}*") == before


def test_an_unsigned_event_is_still_refused(web: str, store: CallStore) -> None:
    queue_call(store, "call-u")
    body = envelope("dialout.answered", "evt-u", user_id="call-u", session_id="s-u")
    response = post(web, body, {"Content-Type": "application/json"})
    assert response.status_code == 401
    assert store.state("call-u") == "queued"


def test_unknown_type_is_acknowledged_and_kept(
    web: str, store: CallStore, sign_webhook: Any
) -> None:
    queue_call(store, "call-6")
    body = envelope("recording.started", "evt-6", user_id="call-6", session_id="s-6")
    assert post(web, body, sign_webhook(body)).status_code == 200
    call = store.get("call-6")
    assert call is not None
    assert call["state"] == "queued"
    assert call["history"][-1]["event"] == "recording.started"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_malformed_but_signed_is_400(web: str, sign_webhook: Any, body: bytes) -> None:
    response = post(web, body, sign_webhook(body))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid-request-error"


def test_oversized_body_is_413(web: str, sign_webhook: Any) -> None:
    body = envelope("dialout.answered", "evt-7", user_id="x", pad="x" * 70_000)
    response = post(web, body, sign_webhook(body))
    assert response.status_code == 413
    assert response.json()["error"] == "payload-too-large-error"


def test_dialin_events_create_a_dialin_record(
    web: str, store: CallStore, sign_webhook: Any
) -> None:
    stopped = envelope("dialin.stopped", "evt-8", session_id="in-1", room="r", sip_from="sip:a@b")
    connected = envelope(
        "dialin.connected", "evt-9", session_id="in-1", room="r", sip_from="sip:a@b"
    )
    for body in (stopped, connected):  # out of order: stopped first
        assert post(web, body, sign_webhook(body)).status_code == 200
    call = store.get("dialin-in-1")
    assert call is not None
    assert (call["kind"], call["state"], call["destination"]) == ("dialin", "stopped", "sip:a@b")
    assert call["history"][-1]["ignored"] is True


def test_wrong_method_is_json_405(web: str) -> None:
    response = requests.get(f"{web}/webhooks/daily", timeout=5)
    assert response.status_code == 405
    assert response.json()["error"] == "method-not-allowed-error"


# --- authentic but hostile payloads ---------------------------------------------------------------


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def signed_raw(web: str, sign_webhook: Any, text: str) -> requests.Response:
    body = text.encode()
    return post(web, body, sign_webhook(body))


def readable(web: str, store: CallStore, call_id: str) -> dict[str, Any]:
    """The call as the API shows it; the API and every feed page answer 200."""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    one = requests.get(f"{web}/v1/calls/{call_id}", headers=headers, timeout=5)
    assert one.status_code == 200, one.text
    after = 0
    while True:
        page = requests.get(f"{web}/v1/events", params={"after": after}, headers=headers,
                            timeout=5)  # fmt: skip
        assert page.status_code == 200, page.text
        if not page.json()["events"]:
            break
        after = page.json()["next"]
    found: dict[str, Any] = one.json()
    return found


@pytest.mark.parametrize("field", ["error_msg", "sip_from"])
def test_a_lone_surrogate_is_recorded_in_a_safe_form_and_the_call_moves(
    web: str, store: CallStore, sign_webhook: Any, field: str
) -> None:
    queue_call(store, "call-s")
    text = ('{"version": "1.0.0", "type": "dialout.error", "id": "evt-s", "payload": {'
            f'"user_id": "call-s", "session_id": "s-s", "{field}": "busy \\ud800"}}}}')  # fmt: skip
    response = signed_raw(web, sign_webhook, text)
    assert response.status_code == 200 and response.json()["status"] == "applied"
    call = readable(web, store, "call-s")
    assert call["state"] == "error"
    last = call["history"][-1]
    assert last["data"][field] == "busy \ufffd"
    assert last["data"]["telephonySafeForm"] == {f"payload.{field}": "invalid Unicode replaced "
                                                 "by U+FFFD"}  # fmt: skip
    if field == "error_msg":
        assert call["error"] == "busy \ufffd"


@pytest.mark.parametrize("levels", [985, 990, 5000])
def test_deep_nesting_is_cut_and_the_call_still_moves(
    web: str, store: CallStore, sign_webhook: Any, levels: int
) -> None:
    queue_call(store, "call-d")
    text = ('{"version": "1.0.0", "type": "dialout.error", "id": "evt-d", "payload": '
            f'{{"user_id": "call-d", "session_id": "s-d", "extra": {deep(levels)}}}}}')  # fmt: skip
    response = signed_raw(web, sign_webhook, text)
    assert response.status_code == 200, response.text
    call = readable(web, store, "call-d")
    assert call["state"] == "error"
    marks = call["history"][-1]["data"]["telephonySafeForm"]
    assert list(marks.values()) == ["nested deeper than 16 levels: dropped"]


def test_hostile_signed_webhooks_are_always_answered_and_never_break_a_reader(
    web: str, store: CallStore, sign_webhook: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from hypothesis import HealthCheck, given
    from hypothesis import settings as examples
    from hypothesis import strategies as st
    from support.hostile import HOSTILE, HOSTILE_TEXT

    queue_call(store, "call-h")
    known = ["dialout.connected", "dialout.answered", "dialout.error", "dialout.stopped",
             "dialin.connected", "dialin.stopped", "calltransfer.completed",
             "dialout.warning"]  # fmt: skip
    kinds = st.sampled_from(known) | HOSTILE_TEXT
    keys = st.sampled_from(["user_id", "session_id", "error_msg", "sip_from", "room",
                            "timestamp", "to_endpoint", "extra"])  # fmt: skip
    statuses: list[int] = []

    @examples(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(kind=kinds, event_id=HOSTILE_TEXT | HOSTILE, payload=st.dictionaries(keys, HOSTILE),
           mine=st.booleans())  # fmt: skip
    def deliver(kind: Any, event_id: Any, payload: dict[str, Any], mine: bool) -> None:
        if mine:
            payload = {**payload, "user_id": "call-h"}
        body = json.dumps({"version": "1.0.0", "type": kind, "id": event_id, "payload": payload})
        response = post(web, body.encode(), sign_webhook(body.encode()))
        statuses.append(response.status_code)
        assert 200 <= response.status_code < 300, (body[:300], response.text)

    deliver()
    assert set(statuses) == {200}
    readable(web, store, "call-h")  # the call's GET and every feed page still answer 200
    listing = requests.get(f"{web}/v1/calls", headers={"Authorization": f"Bearer {API_TOKEN}"},
                           timeout=5)  # fmt: skip
    assert listing.status_code == 200
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert tracebacks == []


# --- replays cannot revive the past ---------------------------------------------------------------


def test_a_webhook_signed_long_ago_is_recorded_but_moves_nothing(
    web: str, store: CallStore, sign_webhook: Any
) -> None:
    """A captured dial-in webhook replayed after its session ended and was forgotten (its record
    expired, its id no longer remembered): answered 200, kept on the feed, nothing revived."""
    body = envelope(
        "dialin.connected", "evt-old", session_id="in-old", room="r", sip_from="sip:a@b"
    )
    signed = sign_webhook(body, timestamp=str(int(time.time()) - defaults.WEBHOOK_MAX_AGE - 60))
    response = post(web, body, signed)
    assert response.status_code == 200 and response.json()["status"] == "orphan"
    assert store.get("dialin-in-old") is None
    [kept] = [e for e in store.feed(0, 500) if e["event"] == "dialin.connected"]
    assert kept["ignored"] is True and kept["callId"] is None
    assert kept["data"]["telephonyStale"]["ageSec"] >= defaults.WEBHOOK_MAX_AGE
    assert post(web, body, signed).json()["status"] == "duplicate"

    queue_call(store, "call-f")  # and one signed in the future, beyond the clock skew
    later = envelope("dialout.answered", "evt-future", user_id="call-f", session_id="s-f")
    ahead = str(int(time.time()) + defaults.WEBHOOK_CLOCK_SKEW + 60)
    assert post(web, later, sign_webhook(later, timestamp=ahead)).json()["status"] == "orphan"
    assert store.state("call-f") == "queued"
    fresh = envelope("dialout.answered", "evt-fresh", user_id="call-f", session_id="s-f")
    assert post(web, fresh, sign_webhook(fresh)).json()["status"] == "applied"


# --- the safe form's fast path ---------------------------------------------------------------


def test_a_body_judged_plainly_safe_needs_nothing_made_safe() -> None:
    """Whatever a body holds, when ``plainly_safe`` says so from its bytes, the walk of
    :func:`safe_form` would change nothing; the usual webhook takes the fast path."""
    from hypothesis import given
    from hypothesis import settings as examples
    from hypothesis import strategies as st
    from support.hostile import HOSTILE

    from telephony.inbound import plainly_safe, safe_form

    usual = envelope("dialout.answered", "evt-1", user_id="call-1", session_id="s-1", room="r")
    assert plainly_safe(usual)
    for unsafe in (
        envelope("dialout.error", "e", error_msg="x" * 5000),
        envelope("dialout.error", "e", error_msg="\ud800"),  # json.dumps escapes it: \ud800
        b'{"type": "x", "payload": {"error_msg": "\xed\xa0\x80"}}',  # an encoded surrogate
        envelope("dialout.error", "e", extra=json.loads("[" * 20 + "]" * 20)),
    ):
        assert not plainly_safe(unsafe)

    @examples(max_examples=300, deadline=None)
    @given(value=HOSTILE, ascii_only=st.booleans())
    def judge(value: Any, ascii_only: bool) -> None:
        body = json.dumps({"payload": value}, ensure_ascii=ascii_only).encode(
            "utf-8", "surrogatepass"
        )
        if plainly_safe(body):
            assert safe_form(json.loads(body))[1] == {}

    judge()

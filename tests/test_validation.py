"""Every validation rule on both sides of its boundary, every smuggled JSON type, and properties.

Helpers: :func:`refused` returns the ``fields`` of the one ValidationError a call raises, so a
test states exactly which paths were refused (and that no other path was).
"""

from __future__ import annotations

import json
import math
import pickle
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.hostile import BIDI, NAME_ACCEPTED, NAME_REFUSED, SIP_ACCEPTED, SIP_REFUSED

from telephony import validation as v
from telephony.validation import ValidationError

PSTN = {"phoneNumber": "+12025550123"}
SIP = {"sipUri": "sip:alice@example.com"}
SIP_VIDEO = {**SIP, "video": True}
UUID = "34b0eb2b-1d2c-4c5a-9f6e-0123456789ab"
SESSION = "7d208e2a-5b8e-4f7c-a3f4-0c2f8b7e9d10"


def refused(fn: Callable[[Any], object], data: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        fn(data)
    return info.value.fields


def transfer_refer(data: object) -> dict[str, Any]:
    return v.daily_transfer_body(data, refer=True)


def transfer_daily(data: object) -> dict[str, Any]:
    return v.daily_transfer_body(data, refer=False)


BODY_FUNCTIONS: list[Callable[[Any], object]] = [
    v.dialout_body,
    v.call_request,
    v.dtmf_request,
    v.daily_dtmf_body,
    v.transfer_request,
    transfer_daily,
    transfer_refer,
    v.daily_stop_body,
]


# --- The error itself -----------------------------------------------------------------------------


def test_validation_error_summarises_every_field_and_pickles() -> None:
    error = ValidationError({"phoneNumber": "must be E.164", "": "body must be a JSON object"})
    assert isinstance(error, ValueError)
    assert "phoneNumber: must be E.164" in str(error)
    assert "body: body must be a JSON object" in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ValidationError)
    assert copy.fields == error.fields and str(copy) == str(error)


@pytest.mark.parametrize("fn", BODY_FUNCTIONS)
@pytest.mark.parametrize("data", [None, [], ["phoneNumber"], "x", 1, 1.5, True])
def test_body_that_is_not_an_object_is_refused(fn: Callable[[Any], object], data: Any) -> None:
    assert refused(fn, data) == {"": "body must be a JSON object"}


# --- Dial-out: one field at a time ----------------------------------------------------------------

# (base body, extra fields, refused path or None when accepted)
DIALOUT_BOUNDARIES: list[tuple[dict[str, Any], dict[str, Any], str | None]] = [
    # phoneNumber: '+', country code 1-9, 2..15 digits, ASCII digits only
    ({}, {"phoneNumber": "+1"}, "phoneNumber"),
    ({}, {"phoneNumber": "+12"}, None),
    ({}, {"phoneNumber": "+" + "1" * 15}, None),
    ({}, {"phoneNumber": "+" + "1" * 16}, "phoneNumber"),
    ({}, {"phoneNumber": "+0123456"}, "phoneNumber"),
    ({}, {"phoneNumber": "12025550123"}, "phoneNumber"),
    ({}, {"phoneNumber": "+1 202 555 0123"}, "phoneNumber"),
    ({}, {"phoneNumber": "+1202555012\n"}, "phoneNumber"),
    ({}, {"phoneNumber": "+١٢٣٤٥"}, "phoneNumber"),  # Arabic-Indic digits are not 0-9
    # sipUri: sip:[user@]host[:port][;params][?X-headers]
    ({}, {"sipUri": "sip:example.com"}, None),
    ({}, {"sipUri": "sip:alice@example.com:5060;transport=tcp"}, None),
    ({}, {"sipUri": "sip:10.0.0.1"}, None),
    ({}, {"sipUri": "sip:bob@[2001:db8::1]"}, None),
    ({}, {"sipUri": "sip:+1234;phone-context=example.com@gw.example.com"}, None),
    ({}, {"sipUri": "sip:a@b?X-h1=v1&X-h2=v2"}, None),
    ({}, {"sipUri": "sip:a@b?h1=v1"}, "sipUri"),
    ({}, {"sipUri": "sip:a@b?x-h1=v1"}, "sipUri"),
    ({}, {"sipUri": "sip:a@b?X-h1"}, "sipUri"),
    ({}, {"sipUri": "sip:a@b?X-h1=v1&"}, "sipUri"),
    ({}, {"sipUri": "sip:a@b?"}, "sipUri"),
    ({}, {"sipUri": "sips:a@b"}, None),
    ({}, {"sipUri": "SIP:a@b"}, "sipUri"),
    ({}, {"sipUri": "tel:+12025550123"}, "sipUri"),
    ({}, {"sipUri": "sip:"}, "sipUri"),
    ({}, {"sipUri": "sip:a@"}, "sipUri"),
    ({}, {"sipUri": "sip:@b"}, "sipUri"),
    ({}, {"sipUri": "sip:a b@c"}, "sipUri"),
    ({}, {"sipUri": "sip:a@b\x00"}, "sipUri"),
    ({}, {"sipUri": "sip:é@b"}, "sipUri"),
    ({}, {"sipUri": "sip:a@" + "b" * 2042}, None),  # 2048 characters
    ({}, {"sipUri": "sip:a@" + "b" * 2043}, "sipUri"),
    # displayName 1..256
    (PSTN, {"displayName": ""}, "displayName"),
    (PSTN, {"displayName": "x" * 256}, None),
    (PSTN, {"displayName": "x" * 257}, "displayName"),
    # userId 1..36
    (PSTN, {"userId": ""}, "userId"),
    (PSTN, {"userId": "u" * 36}, None),
    (PSTN, {"userId": "u" * 37}, "userId"),
    # callerId: hyphenated UUID
    (PSTN, {"callerId": UUID}, None),
    (PSTN, {"callerId": UUID.upper()}, None),
    (PSTN, {"callerId": UUID.replace("-", "")}, "callerId"),
    (PSTN, {"callerId": UUID[:-1]}, "callerId"),
    # extension: 1..20 of 0-9 * #
    (PSTN, {"extension": ""}, "extension"),
    (PSTN, {"extension": "12*#"}, None),
    (PSTN, {"extension": "1" * 20}, None),
    (PSTN, {"extension": "1" * 21}, "extension"),
    (PSTN, {"extension": "12a"}, "extension"),
    (PSTN, {"extension": "1,2"}, "extension"),
    # waitBeforeExtensionDialSec 0..60 (also without extension, and on SIP)
    (PSTN, {"waitBeforeExtensionDialSec": -1}, "waitBeforeExtensionDialSec"),
    (PSTN, {"waitBeforeExtensionDialSec": 0}, None),
    (PSTN, {"waitBeforeExtensionDialSec": 60}, None),
    (PSTN, {"waitBeforeExtensionDialSec": 61}, "waitBeforeExtensionDialSec"),
    (SIP, {"waitBeforeExtensionDialSec": 5}, None),
    (PSTN, {"waitBeforeExtensionDialSec": 10**100}, "waitBeforeExtensionDialSec"),
    # video and videoSettings
    (SIP, {"video": False}, None),
    (SIP_VIDEO, {"videoSettings": {}}, None),
    (SIP_VIDEO, {"videoSettings": {"width": 0}}, "videoSettings.width"),
    (SIP_VIDEO, {"videoSettings": {"width": 1}}, None),
    (SIP_VIDEO, {"videoSettings": {"width": 1280}}, None),
    (SIP_VIDEO, {"videoSettings": {"width": 1281}}, "videoSettings.width"),
    (SIP_VIDEO, {"videoSettings": {"height": 0}}, "videoSettings.height"),
    (SIP_VIDEO, {"videoSettings": {"height": 720}}, None),
    (SIP_VIDEO, {"videoSettings": {"height": 721}}, "videoSettings.height"),
    (SIP_VIDEO, {"videoSettings": {"fps": 0}}, "videoSettings.fps"),
    (SIP_VIDEO, {"videoSettings": {"fps": 1}}, None),
    (SIP_VIDEO, {"videoSettings": {"fps": 30}}, None),
    (SIP_VIDEO, {"videoSettings": {"fps": 31}}, "videoSettings.fps"),
    (SIP_VIDEO, {"videoSettings": {"videoBitrate": 0}}, "videoSettings.videoBitrate"),
    (SIP_VIDEO, {"videoSettings": {"videoBitrate": 1000}}, None),
    (SIP_VIDEO, {"videoSettings": {"videoBitrate": 1001}}, "videoSettings.videoBitrate"),
    (SIP_VIDEO, {"videoSettings": {"depth": 8}}, "videoSettings.depth"),
    # codecs
    (PSTN, {"codecs": {}}, None),
    (PSTN, {"codecs": {"audio": ["PCMU", "PCMA", "OPUS", "G722"]}}, None),
    (PSTN, {"codecs": {"audio": []}}, "codecs.audio"),
    (PSTN, {"codecs": {"audio": "OPUS"}}, "codecs.audio"),
    (PSTN, {"codecs": {"audio": ["opus"]}}, "codecs.audio[0]"),
    (PSTN, {"codecs": {"audio": ["OPUS", "AMR"]}}, "codecs.audio[1]"),
    (PSTN, {"codecs": {"audio": ["OPUS", "OPUS"]}}, "codecs.audio[1]"),
    (PSTN, {"codecs": {"audio": ["OPUS", None]}}, "codecs.audio[1]"),
    (PSTN, {"codecs": {"data": ["T38"]}}, "codecs.data"),
    (SIP_VIDEO, {"codecs": {"video": ["H264", "VP8"]}}, None),
    (SIP_VIDEO, {"codecs": {"video": ["AV1"]}}, "codecs.video[0]"),
    (SIP_VIDEO, {"codecs": {"video": ["VP8", "VP8"]}}, "codecs.video[1]"),
    # permissions: any JSON object, passed through
    (SIP, {"permissions": {"canReceive": {"base": False, "byUserId": {"x": True}}}}, None),
    (SIP, {"permissions": {"x": math.nan}}, "permissions"),
    # unknown fields
    (PSTN, {"room": "sales-1"}, "room"),
    (PSTN, {"phone_number": "+12025550123"}, "phone_number"),
]


@pytest.mark.parametrize(("base", "extra", "path"), DIALOUT_BOUNDARIES)
def test_dialout_field_boundaries(
    base: dict[str, Any], extra: dict[str, Any], path: str | None
) -> None:
    body = {**base, **extra}
    if path is None:
        assert v.dialout_body(body) == body
    else:
        assert set(refused(v.dialout_body, body)) == {path}


# (base body, field, values of the wrong JSON type)
SMUGGLED: list[tuple[dict[str, Any], str, list[Any]]] = [
    (PSTN, "waitBeforeExtensionDialSec", [True, False, 1.0, 5.5, "5", None, [5]]),
    (SIP, "video", [1, 0, "true", None, [True]]),
    (PSTN, "displayName", [5, True, None, ["x"], {"x": 1}]),
    (PSTN, "userId", [5, True, None]),
    (PSTN, "callerId", [5, None, {"id": UUID}]),
    (PSTN, "extension", [1234, None, True]),
    (SIP, "sipUri", [5, None, True, ["sip:a@b"]]),
    (SIP, "videoSettings", [None, [], "1280x720", True]),
    (SIP, "codecs", [None, [], "OPUS"]),
    (SIP, "permissions", [None, [], "all", 1]),
]
SMUGGLED_CASES = [(b, f, x) for b, f, xs in SMUGGLED for x in xs]


@pytest.mark.parametrize(("base", "field", "value"), SMUGGLED_CASES)
def test_dialout_refuses_smuggled_types(base: dict[str, Any], field: str, value: Any) -> None:
    assert set(refused(v.dialout_body, {**base, field: value})) == {field}


VIDEO_MAX = {"width": 1280, "height": 720, "fps": 30, "videoBitrate": 1000}


@pytest.mark.parametrize("value", [True, 1.0, 30.0, "30", None])
@pytest.mark.parametrize("key", sorted(VIDEO_MAX))
def test_video_settings_refuse_smuggled_numbers(key: str, value: Any) -> None:
    body = {**SIP_VIDEO, "videoSettings": {key: value}}
    text = f"must be an integer from 1 to {VIDEO_MAX[key]}"
    assert refused(v.dialout_body, body) == {f"videoSettings.{key}": text}


# --- Dial-out: rules across fields ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, {"phoneNumber", "sipUri"}),
        ({**PSTN, **SIP}, {"phoneNumber", "sipUri"}),
        ({**SIP, "callerId": UUID}, {"callerId"}),
        ({**SIP, "extension": "123"}, {"extension"}),
        ({**PSTN, "video": True}, {"video"}),
        ({**PSTN, "video": False}, {"video"}),
        ({**SIP, "videoSettings": {"fps": 15}}, {"videoSettings"}),
        ({**SIP, "video": False, "videoSettings": {}}, {"videoSettings"}),
        ({**SIP, "codecs": {"audio": ["OPUS"], "video": ["VP8"]}}, {"codecs.video"}),
        ({**PSTN, "video": True, "codecs": {"video": ["VP8"]}}, {"video"}),
    ],
)
def test_dialout_cross_field_rules(body: dict[str, Any], expected: set[str]) -> None:
    assert set(refused(v.dialout_body, body)) == expected


def test_dialout_rule_texts_name_the_rule() -> None:
    fields = refused(
        v.dialout_body,
        {"sipUri": "sip:a@b", "callerId": UUID, "waitBeforeExtensionDialSec": 61, "x": 1},
    )
    assert fields == {
        "callerId": "only allowed with phoneNumber (PSTN)",
        "waitBeforeExtensionDialSec": "must be an integer from 0 to 60",
        "x": "unknown field",
    }
    assert refused(v.dialout_body, {"phoneNumber": "12"})["phoneNumber"] == (
        "must be E.164: '+' then country code and up to 15 digits"
    )


def test_dialout_collects_every_error_in_one_raise() -> None:
    body = {
        "phoneNumber": "+1",
        "displayName": "",
        "videoSettings": {"width": 2000, "fps": True, "zoom": 2},
        "codecs": {"audio": ["OPUS", "MP3", "OPUS"]},
        "extra": None,
        7: "non-string key from a Python caller",
    }
    fields = refused(v.dialout_body, body)
    assert set(fields) == {
        "phoneNumber",
        "displayName",
        "videoSettings",  # only with video: true
        "videoSettings.width",
        "videoSettings.fps",
        "videoSettings.zoom",
        "codecs.audio[1]",
        "codecs.audio[2]",
        "extra",
        "7",
    }
    assert fields["codecs.audio[2]"] == "duplicate codec"
    assert fields["videoSettings.zoom"] == fields["extra"] == "unknown field"


def test_dialout_returns_a_deep_clean_copy() -> None:
    body: dict[str, Any] = {
        **SIP_VIDEO,
        "displayName": "Alice",
        "videoSettings": {"width": 1280, "height": 720, "fps": 15, "videoBitrate": 900},
        "codecs": {"audio": ["OPUS"], "video": ["H264"]},
        "permissions": {"canReceive": {"base": True}},
    }
    clean = v.dialout_body(body)
    assert clean == body
    body["permissions"]["canReceive"]["base"] = False
    body["codecs"]["audio"].append("PCMU")
    assert clean["permissions"] == {"canReceive": {"base": True}}
    assert clean["codecs"]["audio"] == ["OPUS"]
    assert json.loads(json.dumps(clean)) == clean


# --- POST /v1/calls -------------------------------------------------------------------------------


def test_call_request_splits_daily_options_from_ours() -> None:
    request = v.call_request(
        {
            "room": "sales-1",
            **PSTN,
            "userId": "order-42:attempt.1_x",
            "callerId": UUID,
            "ringTimeoutSec": 30,
            "maxDurationSec": 3600,
            "metadata": {"order": 42, "tags": ["vip"]},
        }
    )
    assert request.room == "sales-1"
    assert request.dialout == {**PSTN, "callerId": UUID}  # userId is the worker's to send
    assert request.call_id == "order-42:attempt.1_x"
    assert (request.ring_timeout, request.max_duration) == (30, 3600)
    assert request.metadata == {"order": 42, "tags": ["vip"]}
    assert request.destination == "+12025550123" and request.is_pstn
    with pytest.raises(AttributeError):
        request.room = "other"  # type: ignore[misc]


def test_call_request_defaults_and_sip_destination() -> None:
    request = v.call_request({"room": "r", **SIP})
    assert (request.call_id, request.ring_timeout, request.max_duration) == (None, None, None)
    assert request.metadata == {}
    assert request.destination == "sip:alice@example.com" and not request.is_pstn


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"userId": "u" * 36}, None),
        ({"userId": "u" * 37}, "userId"),
        ({"userId": ""}, "userId"),
        ({"userId": "a/b"}, "userId"),
        ({"userId": "a b"}, "userId"),
        ({"userId": "ä"}, "userId"),
        ({"userId": 42}, "userId"),
        ({"ringTimeoutSec": 0}, "ringTimeoutSec"),
        ({"ringTimeoutSec": 1}, None),
        ({"ringTimeoutSec": 600}, None),
        ({"ringTimeoutSec": 601}, "ringTimeoutSec"),
        ({"ringTimeoutSec": True}, "ringTimeoutSec"),
        ({"ringTimeoutSec": 30.0}, "ringTimeoutSec"),
        ({"ringTimeoutSec": "30"}, "ringTimeoutSec"),
        ({"ringTimeoutSec": None}, "ringTimeoutSec"),
        ({"maxDurationSec": 0}, "maxDurationSec"),
        ({"maxDurationSec": 86_400}, None),
        ({"maxDurationSec": 86_401}, "maxDurationSec"),
        ({"metadata": None}, None),
        ({"metadata": [1, "two", 3.5, True, None, {"k": []}]}, None),
        ({"metadata": math.inf}, "metadata"),
        ({"metadata": {"big": 2**64}}, "metadata"),
        ({"metadata": [2**53, -(2**53)]}, None),
        ({"metadata": 2**53 + 1}, "metadata"),  # a double would change it
        ({"metadata": {"n": -(2**53) - 1}}, "metadata"),
        ({"metadata": "\ud800"}, "metadata"),  # a lone surrogate: not Unicode
        ({"metadata": {"\udfff": 1}}, "metadata"),
        ({"metadata": ["ok", "\U0001f600 \u202e"]}, None),
        ({"displayName": "a\ud800"}, "displayName"),
        ({"metadata": {1: "non-string key"}}, "metadata"),
        ({"metadata": {"set": {1, 2}}}, "metadata"),
        ({"room": "a" * 128}, None),
        ({"room": "a" * 129}, "room"),
        ({"room": "sales.1"}, "room"),
        ({"room": None}, "room"),
        ({"state": "queued"}, "state"),
    ],
)
def test_call_request_fields(extra: dict[str, Any], path: str | None) -> None:
    body = {"room": "sales-1", **PSTN, **extra}
    if path is None:
        assert v.call_request(body).dialout == PSTN
    else:
        assert set(refused(v.call_request, body)) == {path}


def test_call_request_metadata_depth_is_bounded() -> None:
    deep: Any = "leaf"
    for _ in range(32):
        deep = [deep]
    assert v.call_request({"room": "r", **PSTN, "metadata": deep}).metadata == deep
    assert set(refused(v.call_request, {"room": "r", **PSTN, "metadata": [deep]})) == {"metadata"}
    looped: list[Any] = []
    looped.append(looped)
    assert set(refused(v.call_request, {"room": "r", **PSTN, "metadata": looped})) == {"metadata"}


def test_call_request_collects_errors_from_both_halves() -> None:
    fields = refused(
        v.call_request, {"phoneNumber": "+1", "ringTimeoutSec": 0, "video": True, "foo": 1}
    )
    assert fields == {
        "room": "required",
        "phoneNumber": "must be E.164: '+' then country code and up to 15 digits",
        "ringTimeoutSec": "must be an integer from 1 to 600",
        "video": "only allowed with sipUri (SIP)",
        "foo": "unknown field",
    }


# --- Room names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sales-1", "A_b-9", "x", "a" * 128])
def test_room_name_accepts(name: str) -> None:
    assert v.room_name(name) == name


@pytest.mark.parametrize("name", ["", "a" * 129, "a b", "a.b", "a/b", "ä", None, 5, ["r"]])
def test_room_name_refuses(name: Any) -> None:
    with pytest.raises(ValidationError) as info:
        v.room_name(name, field="path.room")
    assert info.value.fields == {"path.room": "must be 1 to 128 characters of A-Z a-z 0-9 _ -"}


# --- DTMF -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"tones": "0123456789ABCD*#"}, None),
        ({"tones": "1" * 20}, None),
        ({"tones": "1" * 21}, "tones"),
        ({"tones": ""}, "tones"),
        ({"tones": "12a"}, "tones"),  # lowercase a-d is refused, not normalised
        ({"tones": "E"}, "tones"),
        ({"tones": "1 2"}, "tones"),
        ({"tones": 123}, "tones"),
        ({"tones": None}, "tones"),
        ({"digitDurationMs": 49}, "digitDurationMs"),
        ({"digitDurationMs": 50}, None),
        ({"digitDurationMs": 2000}, None),
        ({"digitDurationMs": 2001}, "digitDurationMs"),
        ({"digitDurationMs": True}, "digitDurationMs"),
        ({"digitDurationMs": 500.0}, "digitDurationMs"),
        ({"digitDurationMs": "500"}, "digitDurationMs"),
        ({"method": "telephone-event"}, None),
        ({"method": "sip-info"}, None),
        ({"method": "auto"}, None),
        ({"method": "AUTO"}, "method"),
        ({"method": "inband"}, "method"),
        ({"method": ["auto"]}, "method"),
        ({"method": None}, "method"),
        ({"sessionId": SESSION}, "sessionId"),  # ours takes the call id from the URL
    ],
)
def test_dtmf_request_fields(extra: dict[str, Any], path: str | None) -> None:
    body = {"tones": "123", **extra}
    if path is None:
        assert v.dtmf_request(body) == body
    else:
        assert set(refused(v.dtmf_request, body)) == {path}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"sessionId": SESSION, "tones": "1#", "digitDurationMs": 500, "method": "auto"}, None),
        ({"sessionId": "s" * 128, "tones": "1"}, None),
        ({"sessionId": "s" * 129, "tones": "1"}, {"sessionId"}),
        ({"sessionId": "", "tones": "1"}, {"sessionId"}),
        ({"sessionId": 5, "tones": "1"}, {"sessionId"}),
        ({"tones": "1"}, {"sessionId"}),
        ({"sessionId": SESSION}, {"tones"}),
        ({}, {"sessionId", "tones"}),
        ({"sessionId": SESSION, "tones": "1", "room": "r"}, {"room"}),
    ],
)
def test_daily_dtmf_body(body: dict[str, Any], expected: set[str] | None) -> None:
    if expected is None:
        assert v.daily_dtmf_body(body) == body
    else:
        assert set(refused(v.daily_dtmf_body, body)) == expected


# --- Transfer and stop ----------------------------------------------------------------------------

SIP_TARGET = {"toEndPoint": "sip:agent@pbx.example.com"}
PSTN_TARGET = {"toEndPoint": "+442071234567"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (SIP_TARGET, None),
        (
            {**PSTN_TARGET, "callerId": UUID, "extension": "12#", "waitBeforeExtensionDialSec": 3},
            None,
        ),
        ({**SIP_TARGET, "refer": True}, None),
        ({**PSTN_TARGET, "refer": True}, None),
        ({**SIP_TARGET, "refer": False, "waitBeforeExtensionDialSec": 60}, None),
        ({}, {"toEndPoint"}),
        ({"toEndPoint": "+1"}, {"toEndPoint"}),
        ({"toEndPoint": "+" + "1" * 16}, {"toEndPoint"}),
        ({"toEndPoint": "sip:a@b?h=v"}, {"toEndPoint"}),
        ({"toEndPoint": "agent@pbx"}, {"toEndPoint"}),
        ({"toEndPoint": 12025550123}, {"toEndPoint"}),
        ({"toEndPoint": None}, {"toEndPoint"}),
        ({**SIP_TARGET, "callerId": UUID}, {"callerId"}),
        ({**SIP_TARGET, "extension": "1"}, {"extension"}),
        ({**PSTN_TARGET, "extension": "1" * 21}, {"extension"}),
        ({**PSTN_TARGET, "waitBeforeExtensionDialSec": 61}, {"waitBeforeExtensionDialSec"}),
        ({**PSTN_TARGET, "waitBeforeExtensionDialSec": -1}, {"waitBeforeExtensionDialSec"}),
        ({**PSTN_TARGET, "refer": True, "callerId": UUID}, {"callerId"}),
        ({**PSTN_TARGET, "refer": True, "extension": "1"}, {"extension"}),
        (
            {**SIP_TARGET, "refer": True, "waitBeforeExtensionDialSec": 0},
            {"waitBeforeExtensionDialSec"},
        ),
        ({**SIP_TARGET, "refer": 1}, {"refer"}),
        ({**SIP_TARGET, "refer": "true"}, {"refer"}),
        ({**SIP_TARGET, "sessionId": SESSION}, {"sessionId"}),
    ],
)
def test_transfer_request(body: dict[str, Any], expected: set[str] | None) -> None:
    if expected is None:
        assert v.transfer_request(body) == body
    else:
        assert set(refused(v.transfer_request, body)) == expected


def test_transfer_rule_texts() -> None:
    fields = refused(v.transfer_request, {**SIP_TARGET, "refer": True, "extension": "1"})
    assert fields == {"extension": "only allowed when toEndPoint is a phone number (PSTN)"}
    fields = refused(v.transfer_request, {**PSTN_TARGET, "refer": True, "extension": "1"})
    assert fields["extension"].startswith("not allowed with refer: true")


@pytest.mark.parametrize(
    ("refer", "body", "expected"),
    [
        (False, {"sessionId": SESSION, **PSTN_TARGET, "callerId": UUID, "extension": "9"}, None),
        (False, {"sessionId": SESSION, **SIP_TARGET, "waitBeforeExtensionDialSec": 0}, None),
        (False, {**SIP_TARGET}, {"sessionId"}),
        (False, {"sessionId": SESSION, **SIP_TARGET, "refer": True}, {"refer"}),
        (False, {"sessionId": SESSION, **SIP_TARGET, "callerId": UUID}, {"callerId"}),
        (True, {"sessionId": SESSION, **SIP_TARGET}, None),
        (True, {"sessionId": SESSION, **PSTN_TARGET}, None),
        (True, {"sessionId": SESSION}, {"toEndPoint"}),
        (True, {"sessionId": SESSION, **PSTN_TARGET, "callerId": UUID}, {"callerId"}),
        (True, {"sessionId": SESSION, **SIP_TARGET, "extension": "1"}, {"extension"}),
    ],
)
def test_daily_transfer_body(refer: bool, body: dict[str, Any], expected: set[str] | None) -> None:
    if expected is None:
        assert v.daily_transfer_body(body, refer=refer) == body
    else:
        with pytest.raises(ValidationError) as info:
            v.daily_transfer_body(body, refer=refer)
        assert set(info.value.fields) == expected


def test_sip_refer_body_knows_only_session_and_target() -> None:
    fields = refused(transfer_refer, {"sessionId": SESSION, **PSTN_TARGET, "extension": "1"})
    assert fields == {"extension": "unknown field"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"sessionId": SESSION}, None),
        ({}, {"sessionId": "required"}),
        (
            {"sessionId": None},
            {"sessionId": "must be a string of 1 to 128 characters (valid Unicode)"},
        ),
        ({"sessionId": SESSION, "force": True}, {"force": "unknown field"}),
    ],
)
def test_daily_stop_body(body: dict[str, Any], expected: dict[str, str] | None) -> None:
    if expected is None:
        assert v.daily_stop_body(body) == body
    else:
        assert refused(v.daily_stop_body, body) == expected


# --- Properties -----------------------------------------------------------------------------------

e164 = st.builds(
    lambda cc, rest: f"+{cc}{rest}",
    st.integers(1, 9),
    st.text("0123456789", min_size=1, max_size=14),
)


@pytest.mark.parametrize("uri", SIP_ACCEPTED)
def test_documented_sip_uris_are_accepted(uri: str) -> None:
    assert v.dialout_body({"sipUri": uri}) == {"sipUri": uri}
    assert v.transfer_request({"toEndPoint": uri}) == {"toEndPoint": uri}


@pytest.mark.parametrize("uri", SIP_REFUSED)
def test_sip_header_injection_is_refused(uri: str) -> None:
    assert set(refused(v.dialout_body, {"sipUri": uri})) == {"sipUri"}
    assert set(refused(v.transfer_request, {"toEndPoint": uri})) == {"toEndPoint"}


@pytest.mark.parametrize("name", NAME_REFUSED)
def test_control_and_bidi_characters_are_refused_in_shown_text(name: str) -> None:
    for field in ("displayName", "userId"):
        body = {"phoneNumber": "+15550100000", field: name}
        assert set(refused(v.dialout_body, body)) == {field}


@pytest.mark.parametrize("name", NAME_ACCEPTED)
def test_names_in_any_script_are_accepted(name: str) -> None:
    body = {"phoneNumber": "+15550100000", "displayName": name}
    assert v.dialout_body(body) == body


def json_of(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    )


plain_json = json_of(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
any_json = json_of(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30))
KNOWN_KEYS = sorted(
    {"room", "tones", "method", "digitDurationMs", "sessionId", "toEndPoint", "refer"}
    | {"metadata", "ringTimeoutSec", "maxDurationSec"}
    | {"sipUri", "phoneNumber", "displayName", "userId", "callerId", "extension"}
    | {"waitBeforeExtensionDialSec", "video", "videoSettings", "codecs", "permissions"}
)
valid_pstn_dialouts = st.fixed_dictionaries(
    {"phoneNumber": e164},
    optional={
        "displayName": st.text(
            st.characters(exclude_categories=["Cc", "Cs"], exclude_characters=BIDI),
            min_size=1,
            max_size=256,
        ),
        "userId": st.text(string.ascii_letters + string.digits + "._:-", min_size=1, max_size=36),
        "callerId": st.uuids().map(str),
        "extension": st.text("0123456789*#", min_size=1, max_size=20),
        "waitBeforeExtensionDialSec": st.integers(0, 60),
        "codecs": st.fixed_dictionaries(
            {
                "audio": st.lists(
                    st.sampled_from(["OPUS", "G722", "PCMU", "PCMA"]), min_size=1, unique=True
                )
            }
        ),
        "permissions": st.dictionaries(st.text(max_size=8), plain_json),
    },
)


@given(e164)
def test_any_e164_number_is_accepted(number: str) -> None:
    assert v.dialout_body({"phoneNumber": number}) == {"phoneNumber": number}
    assert v.transfer_request({"toEndPoint": number}) == {"toEndPoint": number}


@given(st.text("0123456789", min_size=15, max_size=30))
def test_more_than_15_digits_is_refused(digits: str) -> None:
    assert set(refused(v.dialout_body, {"phoneNumber": "+1" + digits})) == {"phoneNumber"}


@given(valid_pstn_dialouts, plain_json)
def test_valid_dialouts_are_accepted_unchanged(body: dict[str, Any], metadata: Any) -> None:
    assert v.dialout_body(body) == body
    request = v.call_request({"room": "r", **body, "metadata": metadata})
    assert request.dialout == {k: x for k, x in body.items() if k != "userId"}
    assert request.metadata == metadata


@given(st.dictionaries(st.sampled_from(KNOWN_KEYS), any_json, max_size=6) | any_json)
def test_arbitrary_json_only_ever_raises_validation_error(data: Any) -> None:
    for fn in BODY_FUNCTIONS:
        try:
            result = fn(data)
        except ValidationError as exc:
            assert exc.fields and all(isinstance(t, str) and t for t in exc.fields.values())
            continue
        # Accepted: the clean copy is plain JSON and validates to itself.
        if isinstance(result, v.CallRequest):
            assert v.dialout_body(result.dialout) == result.dialout
        else:
            assert json.loads(json.dumps(result)) == result
            assert fn(result) == result

"""``GET /openapi.json``: the OpenAPI 3.1 description of the real routes.

Request schemas mirror :mod:`telephony.validation`, built from the same bounds in
:mod:`telephony.defaults`; its cross-field rules (exactly one of ``phoneNumber``/``sipUri``,
PSTN-only and video-only options, what ``refer`` forbids) are disjoint ``oneOf`` branches,
each closed with ``additionalProperties: false``. Patterns are ASCII-only and anchored, so
they mean the same in ECMA-262 (JSON Schema) and Python. One rule is stricter than any schema
can say: integers are integers in JSON (``1.0`` is refused), and ``metadata`` is at most
``JSON_MAX_DEPTH`` deep with 64-bit integers. The tests check that every Flask route is
described here and nothing else, and run schemathesis against the live server.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from flask import Blueprint, Response, jsonify

from telephony import __version__, machine
from telephony import defaults as d
from telephony import validation as v
from telephony.record import ALWAYS as CALL_FIELDS

bp = Blueprint("openapi", __name__)

Schema = dict[str, Any]

# --- Patterns (anchored, ASCII, ECMA-262 and Python alike) -------------------------------------

E164 = f"^{v.E164_PATTERN}$"
ROOM = f"^{v.ROOM_PATTERN}$"
CALL_ID = f"^{v.CALL_ID_PATTERN}$"
NEW_CALL_ID = f"^{v.NEW_CALL_ID_PATTERN}$"
UUID = f"^{v.UUID_PATTERN}$"
EXTENSION = f"^{v.EXTENSION_PATTERN}$"
TONES = f"^{v.TONES_PATTERN}$"
IDEMPOTENCY_KEY = f"^{v.IDEMPOTENCY_KEY_PATTERN}$"
#: ``sip:``/``sips:`` ``[user@]host[:port][;param...][?X-name=value&...]``, as validated.
SIP_URI = f"^{v.SIP_URI_PATTERN}$"
SHOWN_TEXT = f"^{v.SHOWN_CHAR_PATTERN}*$"
CURSOR = f"^{v.CURSOR_PATTERN}$"

# --- Building blocks --------------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _integer(low: int, high: int, description: str = "") -> Schema:
    schema: Schema = {"type": "integer", "minimum": low, "maximum": high}
    if description:
        schema["description"] = description
    return schema


def _string(pattern: str = "", max_length: int = 0, description: str = "") -> Schema:
    schema: Schema = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    if max_length:
        schema["minLength"] = 1
        schema["maxLength"] = max_length
    if description:
        schema["description"] = description
    return schema


def _nullable(kind: str) -> Schema:
    return {"type": [kind, "null"]}


def _closed(properties: Schema, required: list[str], title: str = "") -> Schema:
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    if title:
        schema["title"] = title
    return schema


def _codecs(video: bool) -> Schema:
    def codec_list(names: tuple[str, ...]) -> Schema:
        items = {"type": "string", "enum": list(names)}
        return {"type": "array", "items": items, "minItems": 1, "uniqueItems": True}

    properties = {"audio": codec_list(d.AUDIO_CODECS)}
    if video:
        properties["video"] = codec_list(d.VIDEO_CODECS)
    schema = _closed(properties, [])
    schema["description"] = "Codecs in order of preference; Daily uses the first."
    return schema


def _json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _answer(description: str, schema: Schema, headers: Schema | None = None) -> Schema:
    answer: Schema = {"description": description, "content": _json_content(schema)}
    if headers:
        answer["headers"] = headers
    return answer


_ERROR_TEXT = {
    400: "Invalid input (every broken rule is named in `fields`); nothing was queued.",
    401: "Missing or invalid credentials.",
    404: "No such call.",
    409: "The call's state does not allow this, or the id or Idempotency-Key is taken.",
    413: "Body too large.",
    415: "Content-Type is not application/json.",
    503: "The state store (Redis) is unreachable; retry shortly.",
}


def _errors(*codes: int) -> dict[str, Schema]:
    return {str(code): _answer(_ERROR_TEXT[code], _ref("Error")) for code in codes}


# --- Request bodies ---------------------------------------------------------------------------

_WAIT = _integer(0, d.WAIT_BEFORE_EXTENSION_MAX, "Seconds to wait before dialling `extension`.")
_CALLER_ID = _string(UUID, description="Id of a purchased number (PSTN only).")
_EXTENSION = _string(EXTENSION, description="Dialled after connect (PSTN only).")


def _dialout(branch: str) -> Schema:
    """One branch of ``POST /v1/calls``: PSTN, SIP audio or SIP video."""
    properties: Schema = {
        "room": _string(ROOM, description="Daily room the call joins."),
        "displayName": _string(SHOWN_TEXT, d.DISPLAY_NAME_MAX),
        "userId": _string(NEW_CALL_ID, description="The call's id (default: a new UUID)."),
        "waitBeforeExtensionDialSec": _WAIT,
        "permissions": {"type": "object", "description": "Passed to Daily as is."},
        "ringTimeoutSec": _integer(1, d.RING_TIMEOUT_MAX, "Stop if not answered in time."),
        "maxDurationSec": _integer(1, d.MAX_DURATION_MAX, "Stop the call after this long."),
        "metadata": {"description": "Any JSON, kept on the call and echoed back."},
    }
    required = ["room"]
    if branch == "pstn":
        properties["phoneNumber"] = _string(E164, description="E.164 number to dial.")
        properties["callerId"] = _CALLER_ID
        properties["extension"] = _EXTENSION
        required.append("phoneNumber")
    else:
        properties["sipUri"] = _string(SIP_URI, d.SIP_URI_MAX, "SIP URI to dial.")
        required.append("sipUri")
        properties["video"] = {"type": "boolean", "enum": [branch == "sip-video"]}
        if branch == "sip-video":
            required.append("video")
            properties["videoSettings"] = _closed(
                {
                    "width": _integer(1, d.VIDEO_WIDTH_MAX),
                    "height": _integer(1, d.VIDEO_HEIGHT_MAX),
                    "fps": _integer(1, d.VIDEO_FPS_MAX),
                    "videoBitrate": _integer(1, d.VIDEO_BITRATE_MAX, "kbps"),
                },
                [],
            )
    properties["codecs"] = _codecs(video=branch == "sip-video")
    return _closed(properties, required, f"Dial-out ({branch})")


def _transfer(branch: str) -> Schema:
    properties: Schema = {}
    required = ["toEndPoint"]
    if branch == "refer":
        properties["toEndPoint"] = {"anyOf": [_string(E164), _string(SIP_URI, d.SIP_URI_MAX)]}
        properties["refer"] = {"type": "boolean", "enum": [True]}
        required.append("refer")
        return _closed(properties, required, "SIP REFER (hands the call off)")
    properties["refer"] = {"type": "boolean", "enum": [False]}
    properties["waitBeforeExtensionDialSec"] = _WAIT
    if branch == "pstn":
        properties["toEndPoint"] = _string(E164)
        properties["callerId"] = _CALLER_ID
        properties["extension"] = _EXTENSION
    else:
        properties["toEndPoint"] = _string(SIP_URI, d.SIP_URI_MAX)
    return _closed(properties, required, f"Transfer to {branch.upper()}")


# --- Response bodies --------------------------------------------------------------------------

_STATE = {"type": "string", "enum": list(machine.VISIBLE_STATES)}
_HISTORY_ENTRY: Schema = {
    "type": "object",
    "required": ["seq", "event", "from", "to", "at", "source"],
    "properties": {
        "seq": {"type": "integer", "minimum": 1},
        "event": {"type": "string"},
        "from": {"type": "string"},
        "to": {"type": "string"},
        "at": {"type": "string"},
        "source": {"type": "string"},
        "ignored": {"type": "boolean"},
        "eventId": {"type": "string"},
        "data": {"description": "The event's payload (a webhook's `payload`), or null."},
    },
}
_CALL: Schema = {
    "type": "object",
    "description": "A call. Other recorded fields (options, ringTimeoutSec, transferredTo, "
    "endedAt, ...) may appear beside these.",
    "required": [*CALL_FIELDS],
    "properties": {
        "id": {"type": "string"},
        "kind": {"type": "string", "enum": ["dialout", "dialin"]},
        "room": _nullable("string"),
        "destination": _nullable("string"),
        "state": _STATE,
        "sessionId": _nullable("string"),
        "attempts": {"type": "integer", "minimum": 0},
        "error": _nullable("string"),
        "reason": _nullable("string"),
        "createdAt": _nullable("string"),
        "updatedAt": _nullable("string"),
        "metadata": {},
        "history": {"type": "array", "items": _ref("HistoryEntry")},
    },
}
_EVENT: Schema = {
    "type": "object",
    "description": "One recorded event, as published on `{prefix}:events`.",
    "required": ["seq", "callId", "event", "at", "source"],
    "properties": {
        "seq": {"type": "integer", "minimum": 1},
        "callId": _nullable("string"),
        "sessionId": _nullable("string"),
        "room": _nullable("string"),
        "kind": _nullable("string"),
        "event": {"type": "string"},
        "from": _nullable("string"),
        "to": _nullable("string"),
        "at": {"type": "string"},
        "source": {"type": "string"},
        "ignored": {"type": "boolean"},
        "data": {},
    },
}
_ERROR: Schema = {
    "type": "object",
    "required": ["error", "info"],
    "additionalProperties": False,
    "properties": {
        "error": {"type": "string", "description": "Stable type, e.g. invalid-request-error."},
        "info": {"type": "string", "description": "Human text; may change."},
        "fields": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Each invalid field (dotted path) and the rule it broke.",
        },
    },
}

# --- Operations -------------------------------------------------------------------------------

_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_CALL_ID_PARAM: Schema = {
    "name": "call_id",
    "in": "path",
    "required": True,
    "schema": _string(r"^[A-Za-z0-9._:-]+$"),
}


def _command(summary: str, body: Schema | None, conflict: bool, optional: bool = False) -> Schema:
    operation: Schema = {
        "summary": summary,
        "security": _BEARER,
        "parameters": [_CALL_ID_PARAM],
        "responses": {
            "202": _answer("Queued; the call as it was when the command was queued.", _ref("Call")),
            **_errors(400, 401, 404, *([409] if conflict else []), 413, 415, 503),
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": not optional, "content": _json_content(body)}
    return operation


def _page_params(*params: Schema) -> list[Schema]:
    return [{"in": "query", "required": False, **param} for param in params]


_LIMIT = {"name": "limit", "schema": _integer(1, d.PAGE_MAX), "description": "Page size."}


def _paths() -> Schema:
    return {
        "/v1/calls": {
            "post": {
                "summary": "Queue a dial-out",
                "security": _BEARER,
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": _string(IDEMPOTENCY_KEY),
                        "description": "Same key and body again: the same call (200).",
                    }
                ],
                "requestBody": {"required": True, "content": _json_content(_ref("CallRequest"))},
                "responses": {
                    "202": _answer(
                        "Queued.",
                        _ref("Call"),
                        {"Location": {"schema": {"type": "string"}}},
                    ),
                    "200": _answer("A replay of an earlier request with this key.", _ref("Call")),
                    **_errors(400, 401, 409, 413, 415, 503),
                },
            },
            "get": {
                "summary": "List calls, newest first",
                "security": _BEARER,
                "parameters": _page_params(
                    {"name": "state", "schema": _STATE},
                    {"name": "room", "schema": _string(ROOM)},
                    _LIMIT,
                    {"name": "cursor", "schema": _string(CURSOR), "description": "`next`."},
                ),
                "responses": {
                    "200": _answer("A page of calls (without history).", _ref("CallPage")),
                    **_errors(400, 401, 503),
                },
            },
        },
        "/v1/calls/{call_id}": {
            "get": {
                "summary": "One call with its history",
                "security": _BEARER,
                "parameters": [_CALL_ID_PARAM],
                "responses": {
                    "200": _answer("The call.", _ref("Call")),
                    **_errors(400, 401, 404, 503),
                },
            }
        },
        "/v1/calls/{call_id}/dtmf": {
            "post": _command("Send DTMF tones", _ref("DtmfRequest"), conflict=True)
        },
        "/v1/calls/{call_id}/stop": {
            "post": _command(
                "Hang up, or cancel a queued call (idempotent)",
                _closed({}, [], "No options"),
                conflict=False,
                optional=True,
            )
        },
        "/v1/calls/{call_id}/transfer": {
            "post": _command("Transfer the call", _ref("TransferRequest"), conflict=True)
        },
        "/v1/events": {
            "get": {
                "summary": "The durable feed of events, in seq order",
                "security": _BEARER,
                "parameters": _page_params(
                    {"name": "after", "schema": _integer(0, 2**63 - 1), "description": "A seq."},
                    _LIMIT,
                ),
                "responses": {
                    "200": _answer("Events with seq > after.", _ref("EventPage")),
                    **_errors(400, 401, 503),
                },
            }
        },
        "/webhooks/daily": {
            "post": {
                "summary": "Daily's webhooks (signature verified)",
                "security": [],
                "parameters": [
                    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
                    for name in ("X-Webhook-Signature", "X-Webhook-Timestamp")
                ],
                "requestBody": {
                    "required": True,
                    "content": _json_content(_ref("WebhookEnvelope")),
                },
                "responses": {
                    "200": _answer(
                        "Authentic: recorded (`applied`, `duplicate`, ...), or journalled while "
                        "Redis is away and applied when it is back (`spooled`); or Daily's test "
                        "request (no event `type`, signed or not: `test`).",
                        _closed(
                            {"ok": {"type": "boolean"}, "status": {"type": "string"}},
                            ["ok", "status"],
                        ),
                    ),
                    "400": _answer("Authentic, but not a JSON object.", _ref("Error")),
                    "401": _answer("Missing or invalid signature.", _ref("Error")),
                    **_errors(413, 503),
                },
            }
        },
        "/healthz": {"get": _health("Liveness", _closed({"ok": {"type": "boolean"}}, ["ok"]))},
        "/readyz": {
            "get": _health(
                "Readiness: Redis reachable; `degraded` while webhooks taken during an outage "
                "are still being applied",
                _closed(
                    {
                        "ok": {"type": "boolean"},
                        "status": {"enum": ["ready", "degraded"]},
                        "redis": {"type": "string"},
                        "spool": _closed(
                            {
                                "entries": {"type": "integer", "minimum": 0},
                                "bytes": {"type": "integer", "minimum": 0},
                                "oldest_age": {"type": "number", "minimum": 0},
                                "refused": {"type": "integer", "minimum": 0},
                            },
                            ["entries", "bytes", "oldest_age", "refused"],
                        ),
                        "webhook": _closed(
                            {
                                "status": {"type": "string"},
                                "problem": {"type": "string"},
                                "checkedAt": {"type": "string"},
                            },
                            ["status", "problem", "checkedAt"],
                        ),
                    },
                    ["ok", "status", "redis", "spool"],
                ),
            )
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(503),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": _answer("OpenAPI 3.1.", {"type": "object"})},
            }
        },
    }


def _health(summary: str, schema: Schema) -> Schema:
    return {
        "summary": summary,
        "security": [],
        "responses": {"200": _answer("Up.", schema), **_errors(503)},
    }


@cache
def document() -> Schema:
    """The whole document (built once; it only depends on constants)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "telephony",
            "version": __version__,
            "description": "Place and control outbound calls through Daily's dial-out API, "
            "and follow every call's state.",
        },
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "TELEPHONY_API_TOKEN (any of its comma-separated tokens).",
                }
            },
            "schemas": {
                "CallRequest": {
                    "description": "`room` and Daily's dial-out options in Daily's names, plus "
                    "ours. Exactly one of phoneNumber / sipUri.",
                    "oneOf": [_ref("DialOutPstn"), _ref("DialOutSip"), _ref("DialOutSipVideo")],
                },
                "DialOutPstn": _dialout("pstn"),
                "DialOutSip": _dialout("sip"),
                "DialOutSipVideo": _dialout("sip-video"),
                "DtmfRequest": _closed(
                    {
                        "tones": _string(TONES, description="0-9 A-D * # (uppercase)."),
                        "method": {"type": "string", "enum": list(d.DTMF_METHODS)},
                        "digitDurationMs": _integer(d.DTMF_DURATION_MIN, d.DTMF_DURATION_MAX),
                    },
                    ["tones"],
                ),
                "TransferRequest": {
                    "oneOf": [_ref("TransferPstn"), _ref("TransferSip"), _ref("Refer")]
                },
                "TransferPstn": _transfer("pstn"),
                "TransferSip": _transfer("sip"),
                "Refer": _transfer("refer"),
                "Call": _CALL,
                "HistoryEntry": _HISTORY_ENTRY,
                "CallPage": {
                    "type": "object",
                    "required": ["calls", "next"],
                    "properties": {
                        "calls": {"type": "array", "items": _ref("Call")},
                        "next": {**_nullable("string"), "description": "Cursor of the next page."},
                    },
                },
                "Event": _EVENT,
                "EventPage": {
                    "type": "object",
                    "required": ["events", "next"],
                    "properties": {
                        "events": {"type": "array", "items": _ref("Event")},
                        "next": {"type": "integer", "description": "Pass as `after`."},
                    },
                },
                "WebhookEnvelope": {
                    "type": "object",
                    "required": ["version", "type", "id", "payload"],
                    "properties": {
                        "version": {"type": "string"},
                        "type": {"type": "string"},
                        "id": {"type": "string"},
                        "payload": {"type": "object"},
                        "event_ts": {"type": "number"},
                    },
                },
                "Error": _ERROR,
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document())

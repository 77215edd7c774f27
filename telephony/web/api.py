"""``/v1``: the HTTP API for backends. Routes translate; the domain decides.

Each route parses (query, headers, JSON body), calls :mod:`telephony.calls` or the store, and
renders. Every refusal happens before the domain is called, so a 4xx never queues anything.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.blueprints import BlueprintSetupState

from telephony import defaults, validation
from telephony.calls import CallNotFound, CommandError
from telephony.validation import ValidationError
from telephony.web import openapi
from telephony.web.auth import require_token
from telephony.web.context import services
from telephony.web.errors import ApiError, error_response

bp = Blueprint("api", __name__, url_prefix="/v1")

#: Query parameters each route takes; any other (or a repeated one) is refused.
_QUERY: dict[str, frozenset[str]] = {
    "api.list_calls": frozenset({"state", "room", "limit", "cursor"}),
    "api.events": frozenset({"after", "limit"}),
}


def _check_query() -> None:
    allowed = _QUERY.get(request.endpoint or "", frozenset())
    problems: dict[str, str] = {}
    for name in request.args:
        if name not in allowed:
            problems[name] = "unknown query parameter"
        elif len(request.args.getlist(name)) > 1:
            problems[name] = "given more than once"
    if problems:
        raise ValidationError(problems)


bp.before_request(require_token)
bp.before_request(_check_query)


@bp.record_once
def _serve_description(state: BlueprintSetupState) -> None:
    """The API's OpenAPI document is served wherever the API is (at ``/openapi.json``)."""
    state.app.register_blueprint(openapi.bp)


@bp.errorhandler(ValidationError)
def _invalid(exc: ValidationError) -> Response:
    fields = {path or "body": text for path, text in exc.fields.items()}
    return error_response(400, str(exc), fields)


@bp.errorhandler(CommandError)
def _refused(exc: CommandError) -> Response:
    return error_response(exc.status, str(exc))


# --- parsing ----------------------------------------------------------------------------------


def _int_arg(name: str, default: int) -> int:
    """A whole-number query parameter; its bounds are the domain's (``validation``)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20):  # int() of huge text is slow
        raise ValidationError({name: "must be an integer, 0 or more"})
    return int(raw)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_body(optional: bool = False) -> Any:
    """The JSON body; with ``optional``, ``None`` when there is none (any content type)."""
    if not optional:
        _require_json()
    raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413
    if optional:
        if not raw:
            return None
        _require_json()
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise ApiError(400, "body is nested too deeply", {"body": "nested too deeply"}) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an oversized integer
        raise ApiError(400, f"body is not valid JSON: {exc}", {"body": "not valid JSON"}) from None


def _require_json() -> None:
    if not request.is_json:
        raise ApiError(415, "Content-Type must be application/json")


def _idempotency_key() -> str | None:
    raw = request.headers.get("Idempotency-Key")
    return None if raw is None else validation.idempotency_key(raw, "Idempotency-Key")


def _render(call: dict[str, Any], status: int) -> Response:
    response = jsonify(call)
    response.status_code = status
    return response


# --- calls ------------------------------------------------------------------------------------


@bp.post("/calls")
def create_call() -> Response:
    body = _json_body()
    key = _idempotency_key()
    call, created = services().calls.place(validation.call_request(body), key)
    response = _render(call, 202 if created else 200)
    response.headers["Location"] = f"{bp.url_prefix}/calls/{call['id']}"
    return response


@bp.get("/calls/<call_id>")
def get_call(call_id: str) -> Response:
    call = services().store.get(call_id)
    if call is None:
        raise CallNotFound(f"no call {call_id!r}")
    return jsonify(call)


@bp.get("/calls")
def list_calls() -> Response:
    state = request.args.get("state") or None
    room = request.args.get("room") or None
    cursor = request.args.get("cursor") or None
    limit = _int_arg("limit", defaults.PAGE_DEFAULT)
    validation.listing(state, room, limit, cursor)
    calls, next_cursor = services().store.page(state=state, room=room, limit=limit, cursor=cursor)
    return jsonify({"calls": calls, "next": next_cursor})


@bp.post("/calls/<call_id>/dtmf")
def send_dtmf(call_id: str) -> Response:
    dtmf = validation.dtmf_request(_json_body())
    return _render(services().calls.send_dtmf(call_id, dtmf), 202)


@bp.post("/calls/<call_id>/stop")
def stop_call(call_id: str) -> Response:
    validation.stop_request(_json_body(optional=True))
    return _render(services().calls.stop(call_id), 202)


@bp.post("/calls/<call_id>/transfer")
def transfer_call(call_id: str) -> Response:
    transfer = validation.transfer_request(_json_body())
    return _render(services().calls.transfer(call_id, transfer), 202)


# --- the feed ---------------------------------------------------------------------------------


@bp.get("/events")
def events() -> Response:
    after, limit = _int_arg("after", 0), _int_arg("limit", defaults.PAGE_DEFAULT)
    validation.feed_query(after, limit)
    items = services().store.feed(after=after, limit=limit)
    return jsonify({"events": items, "next": items[-1]["seq"] if items else after})

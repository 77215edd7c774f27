"""``/v1``: the HTTP API for backends. Routes translate; the domain decides."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from telephony import defaults, machine
from telephony.web.auth import require_token
from telephony.web.context import services
from telephony.web.errors import ApiError

bp = Blueprint("api", __name__, url_prefix="/v1")
bp.before_request(require_token)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(
            400,
            f"invalid query parameter {name}",
            {name: f"must be an integer from {low} to {high}"},
        )
    return int(raw)


@bp.get("/calls/<call_id>")
def get_call(call_id: str) -> Response:
    call = services().store.get(call_id)
    if call is None:
        raise ApiError(404, f"no call {call_id!r}")
    return jsonify(call)


@bp.get("/calls")
def list_calls() -> Response:
    state = request.args.get("state") or None
    if state is not None and (state not in machine.STATES or state == "new"):
        raise ApiError(
            400,
            "invalid query parameter state",
            {"state": f"must be one of {', '.join(machine.STATES[1:])}"},
        )
    room = request.args.get("room") or None
    limit = _int_arg("limit", defaults.PAGE_DEFAULT, 1, defaults.PAGE_MAX)
    cursor = request.args.get("cursor") or None
    if cursor is not None:
        score, sep, last = cursor.partition(":")
        if not (sep and score.isdigit() and last):
            raise ApiError(
                400,
                "invalid query parameter cursor",
                {"cursor": "must be a cursor returned by this API"},
            )
    calls, next_cursor = services().store.page(state=state, room=room, limit=limit, cursor=cursor)
    return jsonify({"calls": calls, "next": next_cursor})


@bp.get("/events")
def events() -> Response:
    after = _int_arg("after", 0, 0, 2**63 - 1)
    limit = _int_arg("limit", defaults.PAGE_DEFAULT, 1, defaults.PAGE_MAX)
    items = services().store.feed(after=after, limit=limit)
    return jsonify({"events": items, "next": items[-1]["seq"] if items else after})

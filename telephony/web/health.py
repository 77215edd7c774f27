"""Liveness, readiness and Prometheus metrics: what an orchestrator and a dashboard poll."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from telephony.web.context import services
from telephony.web.errors import error_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"ok": True})


@bp.get("/readyz")
def readyz() -> Response:
    try:
        services().redis.ping()
    except redis.RedisError:
        return error_response(503, "redis unreachable")
    return jsonify({"ok": True, "redis": "reachable"})


@bp.get("/metrics")
def metrics() -> Response:
    """Counters kept in Redis (shared by every process), in Prometheus' text format."""
    counters = services().redis.hgetall(services().keys.metrics)
    lines = [
        "# HELP telephony_events_total Events recorded, by outcome.",
        "# TYPE telephony_events_total counter",
    ]
    entered: list[str] = []
    other: list[str] = []
    for raw_name, raw_value in sorted(counters.items()):
        name, value = raw_name.decode(), raw_value.decode()
        if name.startswith("events_"):
            lines.append(f'telephony_events_total{{outcome="{name[7:]}"}} {value}')
        elif name.startswith("entered_"):
            entered.append(f'telephony_transitions_total{{to="{name[8:]}"}} {value}')
        else:
            other.append(f"telephony_{name}_total {value}")
    lines += [
        "# HELP telephony_transitions_total State changes, by the state entered.",
        "# TYPE telephony_transitions_total counter",
        *entered,
        *other,
    ]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")

"""Liveness, readiness and Prometheus metrics: what an orchestrator and a dashboard poll."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from telephony import webhook_health
from telephony.web.context import services
from telephony.web.errors import error_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"ok": True})


@bp.get("/readyz")
def readyz() -> Response:
    """Ready while Redis answers; ``degraded`` while this process's webhook spool still holds
    webhooks it took while Redis was away (they are being applied), or while Daily has no
    webhook for us (see :mod:`telephony.webhook_health`)."""
    spool = _spool_stats()
    try:
        webhook = webhook_health.status(services().store)
    except redis.RedisError:
        return error_response(503, "redis unreachable")
    problem = webhook.get("problem") or ""
    status = "degraded" if spool["entries"] or problem else "ready"
    body = {"ok": True, "status": status, "redis": "reachable", "spool": spool}
    if webhook:  # what the workers' last check of Daily's webhook found
        body["webhook"] = {"status": webhook.get("status", ""), "problem": problem,
                           "checkedAt": webhook.get("checkedAt", "")}  # fmt: skip
    return jsonify(body)


def _spool_stats() -> dict[str, float]:
    spool = services().receiver.spool
    if spool is None:
        return {"entries": 0, "bytes": 0, "oldest_age": 0.0, "refused": 0}
    return spool.stats()


@bp.get("/metrics")
def metrics() -> Response:
    """Counters kept in Redis (shared by every process), in Prometheus' text format, and this
    process's webhook spool (shown even while Redis is away)."""
    spool = _spool_stats()
    lines = [
        "# HELP telephony_spool_entries Webhooks journalled while Redis was away, not yet applied.",
        "# TYPE telephony_spool_entries gauge",
        f"telephony_spool_entries {spool['entries']}",
        "# HELP telephony_spool_bytes Bytes of the webhook journal.",
        "# TYPE telephony_spool_bytes gauge",
        f"telephony_spool_bytes {spool['bytes']}",
        "# HELP telephony_spool_oldest_age_seconds Age of the oldest journalled webhook.",
        "# TYPE telephony_spool_oldest_age_seconds gauge",
        f"telephony_spool_oldest_age_seconds {spool['oldest_age']:.3f}",
        "# HELP telephony_spool_refused_total Webhooks refused (503) with the journal full.",
        "# TYPE telephony_spool_refused_total counter",
        f"telephony_spool_refused_total {spool['refused']}",
    ]
    try:
        counters = services().redis.hgetall(services().keys.metrics)
    except redis.RedisError:
        counters = {}  # Redis away: the spool's figures are what matters now
    lines += [
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

"""``POST /webhooks/daily``: raw body and headers in, the domain's verdict out, fast.

:func:`answer` is the whole verdict; the Flask route below and the ASGI front's fast path
(:mod:`telephony.web.asgi`, which runs it on the event loop once the body is in) both use it.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint, Response, jsonify, request

from telephony import defaults
from telephony.inbound import WebhookRejected
from telephony.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER
from telephony.web.context import Services, services
from telephony.web.errors import RETRY_SOON, STORE_UNAVAILABLE, error_body

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)
PATH = "/webhooks/daily"

#: (HTTP status, JSON body, extra headers)
Answer = tuple[int, dict[str, Any], dict[str, str]]


def answer(found: Services, body: bytes, timestamp: str | None, sig: str | None) -> Answer:
    """Verify and record one webhook; what to answer."""
    try:
        outcome = found.receiver.receive(body, timestamp, sig)
    except WebhookRejected as exc:
        found.count(f"webhooks_rejected_{exc.status}")
        return exc.status, error_body(exc.status, str(exc)), {}
    except redis.RedisError as exc:  # Redis away with no spool, or refusing the script
        log.warning("redis unavailable: %s", exc)
        return 503, error_body(503, STORE_UNAVAILABLE), RETRY_SOON
    return 200, {"ok": True, "status": outcome.status if outcome else "test"}, {}


@bp.post(PATH)
def daily() -> Response:
    request.max_content_length = defaults.WEBHOOK_MAX_BYTES
    body = request.get_data(cache=False)
    headers = request.headers
    status, payload, extra = answer(
        services(), body, headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
    )
    response = jsonify(payload)
    response.status_code = status
    response.headers.update(extra)
    return response

"""``POST /webhooks/daily``: raw body and headers in, the domain's verdict out, fast."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from telephony import defaults
from telephony.inbound import WebhookRejected
from telephony.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER
from telephony.web.context import services
from telephony.web.errors import error_response

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/daily")
def daily() -> Response:
    request.max_content_length = defaults.WEBHOOK_MAX_BYTES
    body = request.get_data(cache=False)
    try:
        outcome = services().receiver.receive(
            body, request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER)
        )
    except WebhookRejected as exc:
        services().count(f"webhooks_rejected_{exc.status}")
        return error_response(exc.status, str(exc))
    return jsonify({"ok": True, "status": outcome.status if outcome else "test"})

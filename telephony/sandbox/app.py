"""The sandbox's HTTP face: Daily's REST routes under ``/v1`` and introspection under ``/_sandbox``.

``/_sandbox/*`` is not Daily's API and needs no key: ``GET /_sandbox/starts`` (every start
attempt: ``t`` monotonic seconds, ``userId``, ``destination``, ``status`` (``null`` when no
response was sent), ``sessionId``, ``counted`` by the rate limit, ``dropped`` (placed, no
response), ``hung`` (nothing placed, no response) and its ``released`` reason: ``client``,
``timeout`` or ``stopped``), ``GET /_sandbox/sessions`` (each session's ``state`` and the
``events`` it sent, in order), ``GET /_sandbox/rooms`` (each room's ``legs`` not yet ended
and the ``peak`` it had at once), ``GET /_sandbox/deliveries`` (every webhook POST: ``eventId``,
``type``, ``attempt``, ``status``, ``ok``, ``error``; test requests have type ``"test"``),
``GET /_sandbox/webhooks``, and ``POST /_sandbox/reset`` (body ``{"webhooks": true}`` also
deletes the webhooks).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from telephony import validation
from telephony.sandbox import errors
from telephony.sandbox.core import SandboxCore
from telephony.sandbox.errors import ApiError
from telephony.sandbox.starts import Unanswered, hosting_room

log = logging.getLogger(__name__)

#: Largest request body: Daily's bodies are tiny; this only stops abuse.
MAX_BODY = 1024 * 1024


def _client_socket() -> socket.socket:
    sock = request.environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        raise RuntimeError("the drop and hang outcomes need the werkzeug server")
    return sock


def _drop_connection(sock: socket.socket) -> None:
    """Close the client's connection with no response at all (``drop`` and ``hang``).

    The view still returns; werkzeug's write then fails with a broken pipe, which it treats as
    a client that went away. A client that already left may have reset it: nothing to close.
    """
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _daily(core: SandboxCore) -> Blueprint:
    bp = Blueprint("daily", __name__, url_prefix="/v1")

    def body() -> object:
        return errors.parse_json(request.get_data())

    @bp.before_request
    def authenticate() -> None:
        header = request.headers.get("Authorization")
        if not core.authorized(header):
            info = "Invalid API key" if header else "Authorization header missing"
            raise ApiError(401, errors.AUTHENTICATION, info)

    @bp.post("/rooms/<room>/dialOut/start")
    def start(room: str) -> Any:
        try:
            session = core.desk.start(room, request.get_data())
        except Unanswered as unanswered:
            sock = _client_socket()
            core.hold(unanswered, sock)
            _drop_connection(sock)
            return {}  # never sent: the connection is closed
        outcome = session.outcome
        if outcome.response_delay:
            time.sleep(outcome.response_delay * core.time_scale)
        if outcome.early:
            core.sessions.wait_delivered(session, core.early_timeout)
        if outcome.drop:
            _drop_connection(_client_socket())
        return {"ok": "true", "sessionId": session.id}

    @bp.post("/rooms/<room>/dialOut/stop")
    def stop(room: str) -> Any:
        name = hosting_room(room)
        fields = errors.validated(validation.daily_stop_body, body())
        core.sessions.stop(name, fields["sessionId"])
        return {"status": "sent"}

    @bp.post("/rooms/<room>/dialOut/sendDTMF")
    def send_dtmf(room: str) -> Any:
        name = hosting_room(room)
        fields = errors.validated(validation.daily_dtmf_body, body())
        core.sessions.send_dtmf(name, fields)
        return {"ok": "true"}

    def transfer(room: str, *, refer: bool) -> Any:
        name = hosting_room(room)
        data = body()
        fields = errors.validated(lambda d: validation.daily_transfer_body(d, refer=refer), data)
        core.sessions.transfer(name, fields, refer=refer)
        return {"ok": "true"}

    @bp.post("/rooms/<room>/sipCallTransfer")
    def sip_call_transfer(room: str) -> Any:
        return transfer(room, refer=False)

    @bp.post("/rooms/<room>/sipRefer")
    def sip_refer(room: str) -> Any:
        return transfer(room, refer=True)

    @bp.get("/rooms/<room>/presence")
    def presence(room: str) -> Any:
        legs = core.sessions.presence(room, core.presence_lag, request.args.get("userId"))
        return {"total_count": len(legs), "data": legs}

    @bp.get("/presence")
    def rooms_presence() -> Any:
        return core.sessions.rooms_presence(core.presence_lag)

    @bp.get("/logs/api")
    def logs_api() -> Any:
        return core.api_log.page(dict(request.args))

    @bp.after_request
    def log_request(response: Response) -> Response:
        """Daily's API log (``source=api``); reading the log is not itself logged."""
        if request.path != "/v1/logs/api":
            core.api_log.add(
                "api", method=request.method, url=request.full_path.rstrip("?"),
                status=response.status_code, request=request.get_data(as_text=True),
                response=response.get_data(as_text=True),
            )  # fmt: skip
        return response

    @bp.post("/webhooks")
    def create_webhook() -> Any:
        return core.webhooks.create(body())

    @bp.get("/webhooks")
    def list_webhooks() -> Any:
        return jsonify(core.webhooks.list())

    @bp.get("/webhooks/<webhook_id>")
    def get_webhook(webhook_id: str) -> Any:
        return core.webhooks.get(webhook_id)

    @bp.post("/webhooks/<webhook_id>")
    def update_webhook(webhook_id: str) -> Any:
        return core.webhooks.update(webhook_id, body())

    @bp.delete("/webhooks/<webhook_id>")
    def delete_webhook(webhook_id: str) -> Any:
        return core.webhooks.delete(webhook_id)

    return bp


def _introspection(core: SandboxCore) -> Blueprint:
    bp = Blueprint("sandbox", __name__, url_prefix="/_sandbox")

    @bp.get("/starts")
    def starts() -> Any:
        return jsonify(core.desk.attempts())

    @bp.get("/sessions")
    def sessions() -> Any:
        return jsonify(core.sessions.snapshot())

    @bp.get("/rooms")
    def rooms() -> Any:
        return jsonify(core.sessions.rooms())

    @bp.get("/deliveries")
    def deliveries() -> Any:
        return jsonify(core.deliveries.entries())

    @bp.get("/webhooks")
    def webhooks() -> Any:
        return jsonify(core.webhooks.list())

    @bp.post("/reset")
    def reset() -> Any:
        raw = request.get_data()
        data = errors.parse_json(raw) if raw.strip() else {}
        core.reset(webhooks=isinstance(data, dict) and data.get("webhooks") is True)
        return {"status": "reset"}

    return bp


def create_app(core: SandboxCore) -> Flask:
    app = Flask("telephony.sandbox")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_blueprint(_daily(core))
    app.register_blueprint(_introspection(core))

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        response = jsonify(exc.body())
        response.status_code = exc.status
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 404:
            kind = errors.NOT_FOUND
        else:
            kind = errors.SERVER if status >= 500 else errors.INVALID_REQUEST
        return api_error(ApiError(status, kind, exc.description or exc.name))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("sandbox: unexpected error")
        return api_error(ApiError(500, errors.SERVER, "internal error"))

    return app

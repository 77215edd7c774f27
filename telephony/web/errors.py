"""JSON errors everywhere: ``{"error", "info", "fields"?}``, never a stack trace or HTML page."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

#: Error type per status, in the style of Daily's own ``error`` strings.
ERROR_TYPES = {
    400: "invalid-request-error",
    401: "authentication-error",
    403: "forbidden-error",
    404: "not-found-error",
    405: "method-not-allowed-error",
    408: "timeout-error",
    409: "conflict-error",
    413: "payload-too-large-error",
    415: "unsupported-media-type-error",
    429: "rate-limit-error",
    500: "server-error",
    503: "unavailable-error",
}


#: What a request hears while Redis is away, and when to try again.
STORE_UNAVAILABLE = "state store unavailable, retry shortly"
RETRY_SOON = {"Retry-After": "1"}


class ApiError(Exception):
    """An error answer raised anywhere below a route; rendered by :func:`register`."""

    def __init__(
        self,
        status: int,
        info: str,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(info)
        self.status = status
        self.info = info
        self.fields = fields
        self.headers = headers or {}


def error_body(status: int, info: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON of an error answer (the contract's shape)."""
    body: dict[str, Any] = {"error": ERROR_TYPES.get(status, "error"), "info": info}
    if fields:
        body["fields"] = fields
    return body


def error_response(
    status: int,
    info: str,
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = jsonify(error_body(status, info, fields))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.info, exc.fields, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {"Allow": ", ".join(exc.valid_methods)} if status == 405 else {}  # type: ignore[attr-defined]
        return error_response(status, exc.description or exc.name, headers=headers)

    @app.errorhandler(redis.RedisError)
    def _redis_down(exc: redis.RedisError) -> Response:
        log.warning("redis unavailable: %s", exc)
        return error_response(503, STORE_UNAVAILABLE, headers=RETRY_SOON)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal error")

"""The error answer of Daily's REST API, raised anywhere in the sandbox and rendered by the app.

Daily's body is always ``{"error": "<type>", "info": "<text>"}``; the type strings are the
stable part clients classify by, so they are named once here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from telephony.validation import ValidationError

T = TypeVar("T")

INVALID_REQUEST = "invalid-request-error"
AUTHENTICATION = "authentication-error"
FORBIDDEN = "forbidden-error"
JSON_PARSING = "json-parsing-error"
RATE_LIMIT = "rate-limit-error"
SERVER = "server-error"
NOT_FOUND = "not-found-error"


class ApiError(Exception):
    """An error answer: HTTP ``status`` with Daily's ``error`` type and ``info`` text."""

    def __init__(self, status: int, error: str, info: str) -> None:
        super().__init__(f"{status} {error}: {info}")
        self.status = status
        self.error = error
        self.info = info

    def body(self) -> dict[str, str]:
        return {"error": self.error, "info": self.info}


def invalid(info: str) -> ApiError:
    return ApiError(400, INVALID_REQUEST, info)


def not_found(info: str) -> ApiError:
    return ApiError(404, NOT_FOUND, info)


def parse_json(raw: bytes) -> object:
    """A request body as JSON, or Daily's 400 ``json-parsing-error``."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, JSON_PARSING, "Request body is not valid JSON") from None


def validated(check: Callable[[object], T], data: object) -> T:
    """``check(data)`` with a :class:`~telephony.validation.ValidationError` turned into 400."""
    try:
        return check(data)
    except ValidationError as exc:
        fields = "; ".join(f"{path}: {rule}" for path, rule in exc.fields.items())
        raise invalid(fields or str(exc)) from None

"""Bearer tokens for ``/v1``: several at once so they can be rotated without downtime."""

from __future__ import annotations

from flask import request

from telephony.web.context import services
from telephony.web.errors import ApiError

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="telephony"'}


def require_token() -> None:
    """A ``before_request`` hook: every token is compared (constant time), none skipped."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    tokens = services().settings.api_tokens
    if not tokens:
        raise ApiError(
            401, "no API token is configured: /v1 refuses every request", headers=_CHALLENGE
        )
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "missing bearer token", headers=_CHALLENGE)
    matched = False
    for secret in tokens:
        matched |= secret.matches(token.strip())
    if not matched:
        raise ApiError(401, "invalid bearer token", headers=_CHALLENGE)

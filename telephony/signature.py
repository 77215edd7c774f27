"""Daily's webhook signature, used by the receiver to verify and by the sandbox to sign.

``signature = base64(HMAC-SHA256(key=base64decode(secret), msg=timestamp + "." + raw_body))``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside Daily's base64 ``hmac`` secret; ``ValueError`` if not base64."""
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret must be base64") from None


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(key: bytes, timestamp: str | None, signature: str | None, body: bytes) -> bool:
    """Whether ``signature`` is Daily's for this body; constant time on the comparison.

    Freshness is :func:`age`'s matter: a stale authentic webhook is still answered 200 (and
    recorded, moving nothing), never refused as a forgery.
    """
    if not timestamp or not signature:
        return False
    expected = sign(key, timestamp, body)
    return hmac.compare_digest(expected.encode(), signature.strip().encode())


def age(timestamp: str | None, now: float) -> float | None:
    """Seconds since the signed ``timestamp`` (negative: in the future); None if unreadable."""
    try:
        return now - float(timestamp)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None

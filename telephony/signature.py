"""Daily's webhook signature, used by the receiver to verify and by the sandbox to sign.

``signature = base64(HMAC-SHA256(key=base64decode(secret), msg=timestamp + "." + raw_body))``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

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


def verify(
    key: bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    tolerance: float = 0,
    now: float | None = None,
) -> bool:
    """Whether ``signature`` is Daily's for this body; constant time on the comparison.

    ``tolerance`` > 0 also refuses timestamps further than that many seconds from ``now``
    (replay protection); Daily's timestamps are in seconds or milliseconds, both accepted.
    """
    if not timestamp or not signature:
        return False
    expected = sign(key, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        return False
    if tolerance > 0:
        try:
            stamp = float(timestamp)
        except ValueError:
            return False
        if stamp > 1e11:  # milliseconds
            stamp /= 1000
        if abs((time.time() if now is None else now) - stamp) > tolerance:
            return False
    return True

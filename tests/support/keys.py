"""What a refused request must leave unchanged: Redis keys and their values."""

from __future__ import annotations

from typing import Any


def redis_dump(client: Any, match: str = "*") -> dict[bytes, bytes]:
    """Every key (``match``: a glob, e.g. one test's prefix) with its serialised value
    (``DUMP``; TTLs left out)."""
    return {key: client.dump(key) for key in client.scan_iter(match=match, count=1000)}

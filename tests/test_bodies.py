"""Bodies over a route's limit are refused however they arrive, on both kinds of server."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import API_TOKEN
from support.keys import redis_dump
from support.servers import granian

from telephony import defaults
from telephony.config import Settings


def chunked(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """POST ``body`` in 8 KiB chunks over a raw socket (no Content-Length); the reply."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     f"Connection: close\r\n{head}\r\n".encode())  # fmt: skip
        try:
            for i in range(0, len(body), 8192):
                part = body[i : i + 8192]
                conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            conn.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end: the answer is already there
        reply = b""
        while not _whole(reply) and (chunk := conn.recv(65536)):
            reply += chunk
    return reply


def _whole(reply: bytes) -> bool:
    """Whether ``reply`` holds a whole response (headers, and the body its length says)."""
    head, found, body = reply.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


@pytest.fixture(params=["granian", "wsgi"])
def server(request: pytest.FixtureRequest, settings: Settings) -> Iterator[int]:
    """The production server (``telephony serve``) and the WSGI app (gunicorn, tests)."""
    if request.param == "granian":
        with granian(settings) as url:
            yield int(url.rsplit(":", 1)[1])
    else:
        web: str = request.getfixturevalue("web")
        yield int(web.rsplit(":", 1)[1])


def padded_call(size: int) -> bytes:
    """A valid call followed by whitespace: cut anywhere in the padding, still valid JSON."""
    call = json.dumps({"room": "sales-1", "phoneNumber": "+15550100000"}).encode()
    return call + b" " * (size - len(call))


@pytest.mark.parametrize(
    ("path", "limit"),
    [("/v1/calls", defaults.API_MAX_BYTES), ("/webhooks/daily", defaults.WEBHOOK_MAX_BYTES)],
)
def test_a_chunked_body_over_the_limit_is_413_and_changes_nothing(
    server: int, redis_client: Any, path: str, limit: int, sign_webhook: Any
) -> None:
    body = padded_call(limit + 10_000)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_TOKEN}",
               **sign_webhook(body)}  # fmt: skip
    before = redis_dump(redis_client)
    reply = chunked(server, path, body, headers)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"payload-too-large-error" in reply
    assert redis_dump(redis_client) == before

    within = chunked(server, "/v1/calls", padded_call(10_000), headers)
    assert within.startswith(b"HTTP/1.1 202"), within[:300]  # a chunked body within: fine

"""The ASGI front under ``telephony serve``: no slow client holds a thread, bodies are bounded."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
import requests
from conftest import API_TOKEN, DialOut
from support.servers import granian

from telephony.config import Settings
from telephony.store import CallStore

pytestmark = pytest.mark.slow


@pytest.fixture
def serve(settings: Settings) -> Any:
    """The real ``telephony serve`` on a free port; yields its URL."""
    with granian(settings) as url:
        yield url


class Tricklers:
    """``count`` connections sending a request one byte a second: its body (a valid
    ``Content-Length``) or its headers. A connection the server closes is opened again."""

    def __init__(self, port: int, count: int, part: str) -> None:
        self.port, self.count, self.part = port, count, part
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        conn.setblocking(False)
        if self.part == "body":
            conn.send(b"POST /webhooks/daily HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n")
        else:
            conn.send(b"POST /webhooks/daily HTTP/1.1\r\nHost: x\r\n")
        return conn

    def _run(self) -> None:
        conns = [self._open() for _ in range(self.count)]
        while not self.stop.wait(1.0):
            for n, conn in enumerate(conns):
                try:
                    conn.send(b"x")
                except OSError:  # closed by the server (408): come back, as an attacker would
                    conn.close()
                    conns[n] = self._open()
        for conn in conns:
            conn.close()

    def __enter__(self) -> Tricklers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_slow_clients_do_not_starve_the_webhook_receiver(
    serve: str, settings: Settings, call_store: CallStore, sign_webhook: Any
) -> None:
    call = DialOut()
    for change in (call.queue(), call.dial(), call.accept()):
        call_store.apply(change)
    port = int(serve.rsplit(":", 1)[1])
    latencies = []
    with Tricklers(port, 64, "body"), Tricklers(port, 64, "headers"), requests.Session() as s:
        time.sleep(0.5)  # every trickler connected and sending
        for n in range(100):  # one signed webhook every 100 ms for 10 s
            body = call.envelope("dialout.warning", f"evt-slow-{n}")
            began = time.monotonic()
            answer = s.post(f"{serve}/webhooks/daily", data=body, headers=sign_webhook(body),
                            timeout=5)  # fmt: skip
            latencies.append(time.monotonic() - began)
            assert answer.status_code == 200 and answer.json()["status"] == "applied"
            time.sleep(max(0.0, 0.1 - latencies[-1]))
    assert max(latencies) < 1.0, sorted(latencies)[-5:]


def test_bodies_are_bounded_and_must_arrive_in_time(serve: str) -> None:
    port = int(serve.rsplit(":", 1)[1])
    too_big = requests.post(f"{serve}/webhooks/daily", data=b"x" * 70_000, timeout=5)
    assert too_big.status_code == 413 and too_big.json()["error"] == "payload-too-large-error"

    def chunks() -> Any:  # no Content-Length: counted while it arrives
        for _ in range(300):
            yield b"x" * 1000

    chunked = requests.post(f"{serve}/v1/calls", data=chunks(), timeout=5,
                            headers={"Authorization": f"Bearer {API_TOKEN}"})  # fmt: skip
    assert chunked.status_code == 413

    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"POST /webhooks/daily HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        began = time.monotonic()
        reply = conn.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408") and b"connection: close" in reply.lower()
    assert 4.5 < time.monotonic() - began < 7


def test_the_api_answers_through_the_front(serve: str) -> None:
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    placed = requests.post(f"{serve}/v1/calls", json={"room": "r-1", "phoneNumber": "+15550100000"},
                           headers={**auth, "Idempotency-Key": "k-1"}, timeout=5)  # fmt: skip
    assert placed.status_code == 202, placed.text
    call_id = placed.json()["id"]
    got = requests.get(f"{serve}/v1/calls/{call_id}", headers=auth, timeout=5)
    assert got.status_code == 200 and got.json()["id"] == call_id
    listed = requests.get(f"{serve}/v1/calls?room=r-1&limit=5", headers=auth, timeout=5)
    assert [c["id"] for c in listed.json()["calls"]] == [call_id]
    head = requests.head(f"{serve}/v1/calls", headers=auth, timeout=5)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) > 0  # the GET's, as HTTP says
    missing = requests.get(f"{serve}/v1/calls/nope", headers=auth, timeout=5)
    assert missing.status_code == 404 and missing.json()["error"] == "not-found-error"
    bad = requests.post(f"{serve}/v1/calls", data=b"{", headers=auth, timeout=5)
    assert bad.status_code in (400, 415) and "error" in bad.json()

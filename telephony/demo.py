"""``telephony demo``: the whole service on embedded defaults, and a live sample campaign.

Starts a private Redis (AOF on, data under ``--data-dir``), the sandbox, the web server
(``telephony serve``) and a worker pool (``telephony worker``) as child processes, registers the
webhook with the sandbox (its test request included), places one call per sandbox outcome
through the HTTP API and shows them move live. It exits 0 when every call ended in the state
its outcome implies. Ctrl-C stops every child (each in its own process group: no orphans).
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from telephony import defaults, machine, webhook_health
from telephony.client import TelephonyClient
from telephony.config import Settings
from telephony.daily import DailyClient
from telephony.processes import stop_groups, wait_ready
from telephony.redis_server import RedisServer, free_port
from telephony.sandbox.server import Sandbox
from telephony.store import CallStore


@dataclass(frozen=True)
class Sample:
    """One call of the campaign and the end its sandbox outcome implies."""

    label: str
    body: dict[str, Any]
    state: str
    reason: str | None
    dtmf: str | None = None
    stop_after_answer: bool = False


CAMPAIGN = (
    Sample("answered, DTMF, stopped", {"phoneNumber": "+15550100000"}, "stopped", "stopped",
           dtmf="1234#", stop_after_answer=True),
    Sample("no answer → ring timeout", {"phoneNumber": "+15550100001", "ringTimeoutSec": 4},
           "stopped", "no-answer"),
    Sample("rejected (busy)", {"phoneNumber": "+15550100002"}, "error", "error"),
    Sample("unavailable ×2, then answered", {"phoneNumber": "+15550100042", "maxDurationSec": 5},
           "stopped", "max-duration"),
    Sample("webhooks shuffled + duplicated", {"phoneNumber": "+15550100070", "maxDurationSec": 5},
           "stopped", "max-duration"),
    Sample("far end hangs up", {"phoneNumber": "+15550100003"}, "stopped", "hangup"),
    Sample("webhooks before the start response", {"sipUri": "sip:early@demo.example",
           "maxDurationSec": 5}, "stopped", "max-duration"),
    Sample("not allowed", {"phoneNumber": "+15550100090"}, "error", "refused"),
)  # fmt: skip


@dataclass
class Stack:
    """The child processes and in-process servers of one demo run."""

    data_dir: Path
    port: int
    sandbox_port: int
    time_scale: float
    workers: int
    token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    secret: str = field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    redis_server: RedisServer | None = None
    sandbox: Sandbox | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        assert self.redis_server is not None and self.sandbox is not None
        return {
            **os.environ,
            "REDIS_URL": self.redis_server.url,
            "DAILY_API_URL": self.sandbox.url,
            "DAILY_API_KEY": self.sandbox.api_key,
            "DAILY_WEBHOOK_SECRET": self.secret,
            "TELEPHONY_API_TOKEN": self.token,
            "TELEPHONY_RETRY_BASE": "0.5",
            "TELEPHONY_AMBIGUOUS_GRACE": "5",
            "TELEPHONY_SPOOL_DIR": str(self.data_dir / "spool"),
        }

    def start(self) -> None:
        self.redis_server = RedisServer(self.data_dir / "redis", appendonly=True).start()
        self.sandbox = Sandbox(
            port=self.sandbox_port, api_key="sandbox-demo", time_scale=self.time_scale
        ).start()
        log = open(self.data_dir / "children.log", "ab")  # noqa: SIM115 (kept open for children)
        for args in (
            ["serve", "--port", str(self.port), "--workers", "1"],
            ["worker", "-n", str(self.workers)],
        ):
            self.children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "telephony", *args],
                    env=self.env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        wait_ready(f"{self.api}/readyz", self.children)
        with DailyClient(self.sandbox.url, self.sandbox.api_key) as daily:
            webhook = daily.ensure_webhook(
                f"{self.api}/webhooks/daily", self.secret, retry_type=defaults.WEBHOOK_RETRY_TYPE
            )
        settings = Settings.from_env(self.env())  # the workers' health check watches it
        client = redis.Redis.from_url(self.redis_server.url)
        try:
            webhook_health.remember(CallStore(client, settings), webhook)
        finally:
            client.close()

    def stop(self) -> None:
        stop_groups(self.children, grace=15)
        if self.sandbox is not None:
            self.sandbox.stop()
        if self.redis_server is not None:
            self.redis_server.stop()


class Campaign:
    """Places the sample calls through the HTTP API and follows them on pub/sub."""

    def __init__(self, stack: Stack, count: int) -> None:
        self.stack = stack
        self.samples = [CAMPAIGN[i % len(CAMPAIGN)] for i in range(count)]
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {stack.token}"
        self.calls: dict[str, dict[str, Any]] = {}
        self.sample_of: dict[str, Sample] = {}
        self.events = 0
        self.done_actions: set[str] = set()

    def place(self) -> None:
        run = secrets.token_hex(4)  # keys of earlier runs (same data dir) must not replay
        for index, sample in enumerate(self.samples):
            room = f"demo-room-{index + 1}"  # a room each: Daily allows 5 legs in one room
            body = {"room": room, **sample.body, "metadata": {"sample": sample.label}}
            response = self.session.post(
                f"{self.stack.api}/v1/calls",
                json=body,
                headers={"Idempotency-Key": f"demo-{run}-{index}"},
                timeout=10,
            )
            response.raise_for_status()
            call = response.json()
            self.calls[call["id"]] = call
            self.sample_of[call["id"]] = sample

    def on_event(self, event: dict[str, Any]) -> None:
        call_id = event.get("callId")
        if call_id not in self.calls:
            return
        self.events += 1
        call = self.calls[call_id]
        call["state"] = event["to"] or call["state"]
        call["last"] = event["event"]
        if event["event"] == "call.dialing" and not event.get("ignored"):
            call["attempts"] = call.get("attempts", 0) + 1
        sample = self.sample_of[call_id]
        if call["state"] == "answered" and call_id not in self.done_actions:
            self.done_actions.add(call_id)
            if sample.dtmf:
                self._post(f"/v1/calls/{call_id}/dtmf", {"tones": sample.dtmf})
            if sample.stop_after_answer:
                self._post(f"/v1/calls/{call_id}/stop", {})

    def _post(self, path: str, body: dict[str, Any]) -> None:
        self.session.post(f"{self.stack.api}{path}", json=body, timeout=10)

    def finished(self) -> bool:
        return all(c["state"] in machine.FINAL for c in self.calls.values())

    def refresh(self) -> None:
        for call_id in self.calls:
            fresh = self.session.get(f"{self.stack.api}/v1/calls/{call_id}", timeout=10).json()
            self.calls[call_id].update(fresh)

    def verdicts(self) -> list[tuple[str, Sample, dict[str, Any], bool]]:
        rows = []
        for call_id, call in self.calls.items():
            sample = self.sample_of[call_id]
            ok = call["state"] == sample.state and call.get("reason") == sample.reason
            rows.append((call_id, sample, call, ok))
        return rows


def _table(campaign: Campaign, started: float) -> str:
    lines = [f"{'call':<10} {'sample':<38} {'state':<10} {'att':>3}  last event"]
    counts: dict[str, int] = {}
    for call_id, call in campaign.calls.items():
        sample = campaign.sample_of[call_id]
        counts[call["state"]] = counts.get(call["state"], 0) + 1
        lines.append(
            f"{call_id[:8]:<10} {sample.label[:38]:<38} {call['state']:<10} "
            f"{call.get('attempts', 0):>3}  {call.get('last', '')}"
        )
    summary = "  ".join(f"{state}: {n}" for state, n in sorted(counts.items()))
    lines.append(f"\n{campaign.events} events, {time.monotonic() - started:.1f}s   {summary}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(
        data_dir=data_dir,
        port=args.port or free_port(),
        sandbox_port=args.sandbox_port or free_port(),
        time_scale=args.time_scale,
        workers=args.workers,
    )
    interactive = sys.stdout.isatty() and not args.plain
    out = sys.stdout
    try:
        out.write("starting embedded Redis, sandbox, web server and workers...\n")
        stack.start()
        out.write(
            f"web: {stack.api}   sandbox (Daily): {stack.sandbox.url if stack.sandbox else ''}\n"
        )
        # The children's settings (their key prefix included), so we follow their channel.
        client = TelephonyClient(settings=Settings.from_env(stack.env()))
        events = client.subscribe()
        campaign = Campaign(stack, args.calls)
        campaign.place()
        out.write(f"placed {len(campaign.calls)} calls through POST /v1/calls\n")
        started = time.monotonic()
        deadline = started + args.timeout
        last_draw = 0.0
        while time.monotonic() < deadline and not campaign.finished():
            event = events.get(timeout=0.2)
            if event is not None:
                campaign.on_event(event)
                if not interactive and event.get("callId") in campaign.calls:
                    flag = " (ignored)" if event.get("ignored") else ""
                    out.write(
                        f"#{event['seq']:<5} {event['callId'][:8]} {event['event']:<24} "
                        f"{event['from']} → {event['to']}{flag}\n"
                    )
                    out.flush()
            if interactive and time.monotonic() - last_draw > 0.2:
                out.write("\x1b[H\x1b[2J" + _table(campaign, started) + "\n")
                out.flush()
                last_draw = time.monotonic()
        campaign.refresh()
        verdicts = campaign.verdicts()
        out.write("\nsummary\n")
        for call_id, sample, call, ok in verdicts:
            mark = "ok " if ok else "BAD"
            out.write(
                f"  {mark} {call_id[:8]} {sample.label:<38} {call['state']:<8} "
                f"{call.get('reason') or '':<13} attempts={call.get('attempts')}\n"
            )
        good = sum(ok for *_, ok in verdicts)
        out.write(f"\n{good}/{len(verdicts)} calls ended as their sandbox outcome implies.\n")
        out.write(
            "\nlook further:\n"
            f"  export REDIS_URL={client.settings.redis_url}\n"
            f"  telephony watch                 # live events\n"
            f"  curl -H 'Authorization: Bearer {stack.token}' {stack.api}/v1/calls\n"
            f"  rq info -u $REDIS_URL           # queues and workers\n"
        )
        verdict = 0 if good == len(verdicts) else 1
        events.close()
        client.close()
        if args.keep_running:
            out.write("\nkeeping the stack running; Ctrl-C to stop.\n")
            out.flush()
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return verdict
    except KeyboardInterrupt:
        return 130
    finally:
        stack.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calls", type=int, default=len(CAMPAIGN), help="calls to place (default %(default)s)"
    )
    parser.add_argument("--keep-running", action="store_true", help="stay up after the summary")
    parser.add_argument("--port", type=int, default=0, help="web port (default: a free one)")
    parser.add_argument("--sandbox-port", type=int, default=0, help="sandbox port (default: free)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--time-scale", type=float, default=0.5, help="sandbox delays ×this (default 0.5)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120, help="give up after this many seconds"
    )
    parser.add_argument(
        "--data-dir", default=".telephony-demo", help="Redis data (default %(default)s)"
    )
    parser.add_argument(
        "--plain", action="store_true", help="one line per event even on a terminal"
    )

"""Every fault at once: does the service still tell the truth about every call?

    python bench/chaos.py --calls 100 --retry-type circuit-breaker --seed 1
    python bench/chaos.py --calls 100 --retry-type exponential --seed 1

Real processes on loopback: the sandbox; two ``telephony serve`` web processes behind one
webhook URL (a round-robin TCP proxy in this script); a ``telephony worker -n 4`` pool; Redis
with AOF. It places N calls across the sandbox's outcomes (answered, hung up, rejected, never
answered, refused then answered, shuffled, webhooks before the start's answer, a dropped start
response), a room each, in a seeded order; the sandbox sends every webhook 3 times, each copy
up to 2 s late (``--copies``, ``--delay``). While they run it SIGKILLs a worker, stops Redis
for 2 s and, while Redis is away, SIGKILLs the web process whose journal holds the webhooks it
answered meanwhile, then starts it again; it stops every call still up through the API (with a
DTMF first), and the webhook URL refuses every connection for 3 s while the stops' webhooks
come back (Daily's breaker trips in ``circuit-breaker`` mode; ``exponential`` retries).

It prints what a user would check, and exits 1 unless all hold: every call reached the final
state its outcome implies within the bound (or, where Daily never delivered the final webhook,
that state with reason ``reconciled``); the faults bit; every timer ran (none left scheduled,
no job failed); no event lost (every delivery the sandbox got a 200 for is on its call); no
backward move; no event applied twice; no person dialled twice; no 429 from Daily's pacing;
Daily's webhook ACTIVE at the end. Also stop and DTMF latency, 202 to Daily.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
import requests
from common import children, wait_until  # bench/common.py
from jobs import API_KEY, REPO, TOKEN, WEBHOOK_SECRET, percentiles  # bench/jobs.py
from rq.job import Job
from rq.serializers import JSONSerializer

from telephony import machine, webhook_health
from telephony.config import RateLimit, Settings
from telephony.daily import DailyClient
from telephony.dispatch import make_queues
from telephony.processes import wait_ready
from telephony.redis_server import RedisServer, free_port
from telephony.sandbox.delivery import Disorder
from telephony.sandbox.server import Sandbox
from telephony.store import CallStore, unix_time

#: Daily's start limit and ours (a burst waits its turn, as in production).
LIMIT = "50/1s"
#: Seconds the sandbox's presence trails a leg (Daily: up to 15; the service allows one more).
PRESENCE_LAG = 4.0
#: Seconds the webhook URL refuses every connection (Daily's breaker trips after 3 failures).
OUTAGE = 3.0
#: Outcome → (destination, extra request fields, the final state and reason it implies, and
#: whether the call stays up until we stop it).
OUTCOMES: dict[str, tuple[str, dict[str, Any], tuple[str, str], bool]] = {
    "answered": ("+15550100000", {}, ("stopped", "stopped"), True),
    "hangup": ("+15550100003", {}, ("stopped", "hangup"), False),
    "rejected": ("+15550100002", {}, ("error", "error"), False),
    "no-answer": ("+15550100001", {"ringTimeoutSec": 3}, ("stopped", "no-answer"), False),
    "unavailable": ("+15550100042", {}, ("stopped", "stopped"), True),
    "shuffled": ("+15550100070", {}, ("stopped", "stopped"), True),
    "early": ("+15550100080", {}, ("stopped", "stopped"), True),
    "dropped": ("+15550100093", {}, ("stopped", "stopped"), True),
}


#: The events that end a dial-out leg.
FINAL_EVENTS = ("dialout.stopped", "dialout.error")


class RoundRobin:
    """A TCP proxy on one port that hands each connection to the next of ``ports``; it can
    drop everything for a while (a load balancer's outage)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.port = free_port()
        self._turn = 0
        self._down_until = 0.0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def outage(self, seconds: float) -> None:
        """Cut every connection now and refuse new ones for ``seconds``."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            cut, self._open = self._open, set()
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                client.close()  # Daily sees a failed delivery
                continue
            port = self.ports[self._turn % len(self.ports)]
            self._turn += 1
            threading.Thread(target=self._pipe_to, args=(client, port), daemon=True).start()

    def _pipe_to(self, client: socket.socket, port: int) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            client.close()  # that web process is down: Daily sees a failed delivery
            return
        upstream.settimeout(None)
        for sock in (client, upstream):  # no Nagle: a request's head and body are two writes
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open |= {client, upstream}
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_copy, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._server.close()


def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def web_command(port: int) -> list[str]:
    return ["-m", "telephony", "serve", "--port", str(port), "--workers", "1", "--threads", "2"]


def pool_children(pool_pid: int) -> list[int]:
    """The pool's child processes (its workers, scheduler, periodic work, reserve)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pool_pid:
                found.append(int(entry))
    return found


def spooling(spool: Path, webs: list[Any], timeout: float) -> tuple[int, int]:
    """Which of ``webs`` holds webhooks in its journal (Redis is away), and how many bytes;
    waits for one."""
    deadline = time.monotonic() + timeout
    leaders = [w.pid for w in webs]
    while True:
        for journal in spool.glob("*.journal"):
            with contextlib.suppress(OSError, ValueError):
                size, leader = journal.stat().st_size, os.getpgid(int(journal.name.split("-")[-2]))
                if size and leader in leaders:
                    return leaders.index(leader), size
        if time.monotonic() > deadline:
            return len(webs) - 1, 0  # nothing journalled: killed all the same (reported)
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--retry-type", choices=["circuit-breaker", "exponential"],
                        default="circuit-breaker")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--copies", type=int, default=3, help="each webhook sent this often")
    parser.add_argument("--delay", type=float, default=2.0, help="each copy up to this late (s)")
    parser.add_argument("--bound", type=float, default=120.0, help="seconds for every call")
    args = parser.parse_args(argv)
    # A run cut short (timeout, Ctrl-C) still stops every process it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rng = random.Random(args.seed)
    names = [list(OUTCOMES)[n % len(OUTCOMES)] for n in range(args.calls)]
    rng.shuffle(names)
    began = time.monotonic()
    disorder = Disorder(copies=args.copies, delay=args.delay, rng=random.Random(args.seed))

    with (
        tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp,
        RedisServer(Path(tmp) / "redis", appendonly=True) as server,
        Sandbox(
            api_key=API_KEY,
            time_scale=0.5,
            rate_limit=RateLimit.parse(LIMIT),
            presence_lag=PRESENCE_LAG,
            disorder=disorder,
        ) as sandbox,  # fmt: skip
    ):
        env = {
            **os.environ, "PYTHONPATH": str(REPO), "REDIS_URL": server.url,
            "DAILY_API_URL": sandbox.url, "DAILY_API_KEY": API_KEY,
            "DAILY_WEBHOOK_SECRET": WEBHOOK_SECRET, "TELEPHONY_API_TOKEN": TOKEN,
            "TELEPHONY_DIALOUT_LIMIT": LIMIT, "TELEPHONY_KEY_PREFIX": "chaos",
            "TELEPHONY_QUEUE": "chaos", "TELEPHONY_SPOOL_DIR": str(Path(tmp) / "spool"),
            "TELEPHONY_WEBHOOK_CHECK_INTERVAL": "1", "TELEPHONY_RECONCILE_AFTER": "30",
            "TELEPHONY_PRESENCE_LAG": str(PRESENCE_LAG + 1),
        }  # fmt: skip
        settings = Settings.from_env(env)
        client: Any = redis.Redis.from_url(server.url)
        store = CallStore(client, settings)
        ports = [free_port(), free_port()]
        proxy = RoundRobin(ports)
        webs = [children([web_command(port)], env, REPO, Path(tmp) / f"web{i}.log")
                for i, port in enumerate(ports)]  # fmt: skip
        started = [web.__enter__()[0] for web in webs]
        pool = children([["-m", "telephony", "worker", "-n", "4"]], env, REPO,
                        Path(tmp) / "pool.log")  # fmt: skip
        pool_pid = pool.__enter__()[0].pid
        try:
            for port, process in zip(ports, started, strict=True):
                wait_ready(f"http://127.0.0.1:{port}/healthz", [process], timeout=30)
            daily = DailyClient(sandbox.url, API_KEY)
            hook = daily.ensure_webhook(f"http://127.0.0.1:{proxy.port}/webhooks/daily",
                                        WEBHOOK_SECRET, retry_type=args.retry_type)  # fmt: skip
            webhook_health.remember(store, hook)
            api = requests.Session()
            api.headers["Authorization"] = f"Bearer {TOKEN}"
            base = f"http://127.0.0.1:{ports[0]}"
            ids: dict[str, str] = {}
            faults: dict[str, Any] = {}
            for n, name in enumerate(names):
                destination, extra, _, _ = OUTCOMES[name]
                body = {"room": f"chaos-{n}", "phoneNumber": destination, **extra}
                answer = api.post(f"{base}/v1/calls", json=body, timeout=10)
                answer.raise_for_status()
                ids[answer.json()["id"]] = name

            # The faults, while the burst is being started and answered.
            time.sleep(1)
            os.kill(rng.choice(pool_children(pool_pid)), signal.SIGKILL)
            time.sleep(1)
            server.stop()  # Redis away: the web processes journal what Daily sends
            away = time.monotonic()
            spool = Path(tmp) / "spool"
            spooling(spool, started, timeout=5.0)
            time.sleep(max(0.0, 1.5 - (time.monotonic() - away)))  # a few more journalled
            holder, faults["spooled"] = spooling(spool, started, timeout=0)
            os.killpg(started[holder].pid, signal.SIGKILL)  # the whole web process, workers too
            started[holder].wait(10)
            time.sleep(max(0.0, 2.0 - (time.monotonic() - away)))
            server.start()
            webs[holder].__exit__(None, None, None)
            webs[holder] = children([web_command(ports[holder])], env, REPO,
                                    Path(tmp) / f"web{holder}b.log")  # fmt: skip
            started[holder] = webs[holder].__enter__()[0]
            wait_ready(f"http://127.0.0.1:{ports[holder]}/healthz", [started[holder]], timeout=30)
            faults["killed web"] = holder

            # Stop what stays up, a DTMF first; measure 202 -> Daily.
            asked: dict[tuple[str, str], float] = {}

            def state(call_id: str) -> str:
                return str(store.state(call_id) or "")

            up = [c for c, name in ids.items() if OUTCOMES[name][3]]
            wait_until(lambda: all(state(c) in ("answered", *machine.FINAL) for c in up),
                       args.bound, "the calls that stay up to be answered")  # fmt: skip
            for kind, body in (("dtmf", {"tones": "1"}), ("stop", None)):
                for call_id in up:
                    if kind == "dtmf" and state(call_id) != "answered":
                        continue
                    answer = api.post(f"{base}/v1/calls/{call_id}/{kind}", json=body, timeout=10)
                    if answer.status_code == 202:
                        asked[(kind, call_id)] = time.time()
            # The load balancer drops every connection while the stops' webhooks come back.
            proxy.outage(OUTAGE)
            deadline = time.monotonic() + args.bound
            while time.monotonic() < deadline and not all(state(c) in machine.FINAL for c in ids):
                time.sleep(0.5)
            time.sleep(3)  # late deliveries and retries land
            report = check(store, sandbox, ids, asked)
            report["faults"] = faults
            report["spool"] = {p.name: p.stat().st_size for p in (Path(tmp) / "spool").iterdir()}
            report["web_logs"] = {p.name: p.read_text()[-1500:] for p in Path(tmp).glob("web*.log")}
            webhook = next(iter(sandbox.core.webhooks.list()), {})
        finally:
            pool.__exit__(None, None, None)
            for web in webs:
                web.__exit__(None, None, None)
            proxy.close()

    ok = print_report(report, webhook, args, time.monotonic() - began)
    return 0 if ok else 1


def check(
    store: CallStore, sandbox: Sandbox, ids: dict[str, str], asked: dict[tuple[str, str], float]
) -> dict[str, Any]:
    # Deliveries first: one listed as answered 200 was committed before it was answered, so
    # the calls read after it must hold it (read the other way round, late ones look lost).
    deliveries = [d for d in sandbox.deliveries() if d.get("type") != "test"]
    delivered = {d["eventId"] for d in deliveries if d.get("status") == 200}
    # A final webhook Daily never delivered (dropped while the breaker was open) leaves only
    # presence to tell: such a call ends in the right state, with reason "reconciled".
    untold = {session["userId"] for session in sandbox.sessions()
              if not {e["id"] for e in session["events"] if e["type"] in FINAL_EVENTS}
              & delivered}  # fmt: skip
    wrong = {}
    calls = {call_id: store.get(call_id) or {} for call_id in ids}
    for call_id, name in ids.items():
        call = calls[call_id]
        expected = OUTCOMES[name][2]
        got = (call.get("state"), call.get("reason"))
        if got != expected and not (call_id in untold and got == (expected[0], "reconciled")):
            wrong[call_id] = (name, *got, expected)
    feed: list[dict[str, Any]] = []
    after = 0
    while page := store.feed(after=after, limit=1000):
        feed += page
        after = page[-1]["seq"]
    history_ids: Counter[str] = Counter()
    backward = 0
    for call in calls.values():
        for entry in call.get("history", []):
            if "eventId" in entry:
                history_ids[entry["eventId"]] += 1
            if (
                not entry.get("ignored")
                and machine.RANK.get(entry["to"], 0) < machine.RANK.get(entry["from"], 0)
                and entry["event"] != "call.retry_scheduled"
                and entry["from"] != "dialing"
            ):
                backward += 1
    failed = sum(1 for d in deliveries if d.get("status") != 200)
    recorded = set(history_ids) | {e.get("eventId") for e in feed}
    lost = sorted(d for d in delivered if d not in history_ids and d not in recorded)
    sent = {e["id"]: (e["type"], e["payload"].get("user_id"))
            for session in sandbox.sessions() for e in session["events"]}  # fmt: skip
    lost_detail = []
    for event_id in lost[:10]:
        kind, call_id = sent.get(event_id, ("?", None))
        events = [e["event"] for e in calls.get(call_id or "", {}).get("history", [])]
        lost_detail.append((event_id, kind, ids.get(call_id or ""), events))
    starts = [s for s in sandbox.starts() if s["userId"] in ids]
    placed = Counter(s["userId"] for s in starts if s["sessionId"])
    reached: dict[tuple[str, str], float] = {}
    by_session = {call.get("sessionId"): call_id for call_id, call in calls.items()}
    for kind, path in (("dtmf", "dialOut/sendDTMF"), ("stop", "dialOut/stop")):
        for entry in sandbox.core.api_log.page({"source": "api", "url": path,
                                                "limit": "1000"})["data"]:  # fmt: skip
            call_id = by_session.get(json.loads(entry["request"]).get("sessionId"))
            if call_id is not None:
                reached.setdefault((kind, call_id), unix_time(entry["createdAt"]) or 0.0)
    queues = make_queues(store.redis, store.settings)  # the command lane and the main queue
    notes = Counter(e["event"] for e in feed if e.get("source") == "service")
    return {
        "reconciled": sum(1 for c in calls.values() if c.get("reason") == "reconciled"),
        "reactivated": notes["webhook.reactivated"],
        "timers_left": timers_left(store, queues, calls),
        "jobs_failed": failed_jobs(store, queues),
        "wrong": wrong,
        "lost": lost,
        "lost_detail": lost_detail,
        "delivered": len(delivered),
        "failed": failed,
        "attempts": len(deliveries),
        "delivering": max(d["t"] for d in deliveries) - min(d["t"] for d in deliveries),
        "backward": backward,
        "twice": sorted(i for i, n in history_ids.items() if n > 1),
        "double_dials": sorted(c for c, n in placed.items() if n > 1),
        "rate_limited": sum(1 for s in starts if s["status"] == 429),
        "latency": {
            kind: [reached[k] - t for k, t in asked.items() if k[0] == kind and k in reached]
            for kind in ("stop", "dtmf")
        },
        "outcomes": Counter(ids.values()),
    }


def timers_left(store: CallStore, queues: list[Any], calls: dict[str, Any]) -> list[str]:
    """Jobs still scheduled, each with when it is due and what its call says."""
    found = []
    now = time.time()
    for queue in queues:
        registry = queue.scheduled_job_registry
        for raw, due in store.redis.zrange(registry.key, 0, -1, withscores=True):
            job_id = raw.decode()
            try:
                job = Job.fetch(job_id, connection=store.redis, serializer=JSONSerializer)
                call_id = str(job.args[0])
            except Exception as exc:  # a report line, whatever went wrong
                found.append(f"{job_id} due in {due - now:+.0f} s; unreadable: {exc!r}")
                continue
            call = calls.get(call_id) or store.get(call_id) or {}
            events = [(e["event"], e["source"]) for e in call.get("history", [])][-6:]
            watch = store.redis.hget(store.keys.call(call_id), "watchJob")
            found.append(f"{job_id} due in {due - now:+.0f} s; call {call_id} {call.get('state')} "
                         f"{call.get('reason')}, watchJob {watch!r}, last {events}")  # fmt: skip
    return found


def failed_jobs(store: CallStore, queues: list[Any]) -> list[str]:
    """Jobs in a failed registry, each with the last line of why."""
    found = []
    for queue in queues:
        for job_id in queue.failed_job_registry.get_job_ids():
            job = Job.fetch(job_id, connection=store.redis, serializer=JSONSerializer)
            why = (job.exc_info or "").strip().splitlines() or ["?"]
            found.append(f"{job_id}: {why[-1][:300]}")
            if os.environ.get("CHAOS_TRACEBACKS"):
                print(job.exc_info, file=sys.stderr)
    return found


def print_report(report: dict[str, Any], webhook: dict[str, Any], args: Any, took: float) -> bool:
    print(f"chaos: {args.calls} calls, retry type {args.retry_type}, seed {args.seed}, "
          f"{took:.0f} s; outcomes {dict(report['outcomes'])}")  # fmt: skip
    faults = report["faults"]
    print(
        f"faults: each webhook sent {args.copies}x, up to {args.delay:g} s late; a worker "
        f"SIGKILLed; Redis down 2 s (AOF); web{faults['killed web']} SIGKILLed holding "
        f"{faults['spooled']} B of journalled webhooks, started again; the webhook URL "
        f"refusing every connection for {OUTAGE:g} s; two web processes behind one URL"
    )
    print(
        f"seen: {report['attempts']} deliveries in {report['delivering']:.0f} s, "
        f"{report['failed']} failed on the way; breaker re-activated "
        f"{report['reactivated']}x; {report['reconciled']} calls ended by presence"
    )
    checks = {
        f"every call in the state its outcome implies (within {args.bound:g} s)":
            not report["wrong"],
        "the faults bit (a web process killed holding journalled webhooks, deliveries "
        "failed, in circuit-breaker mode the breaker tripped)":
            faults["spooled"] > 0 and report["failed"] > 0
            and (report["reactivated"] > 0 or args.retry_type != "circuit-breaker"),
        f"every timer ran ({len(report['timers_left'])} left scheduled, "
        f"{len(report['jobs_failed'])} jobs failed)":
            not report["timers_left"] and not report["jobs_failed"],
        f"0 events lost ({report['delivered']} events answered 200)": not report["lost"],
        "0 backward moves": report["backward"] == 0,
        "0 events applied twice": not report["twice"],
        "0 double dials": not report["double_dials"],
        "0 pacing 429s from Daily": report["rate_limited"] == 0,
        f"Daily's webhook ACTIVE at the end ({webhook.get('state')})":
            webhook.get("state") == "ACTIVE",
    }  # fmt: skip
    for text, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {text}")
    for call_id, why in list(report["wrong"].items())[:10]:
        print(f"       {call_id}: {why}")
    for event_id, kind, outcome, events in report["lost_detail"]:
        print(f"       lost {event_id} {kind} ({outcome}); its call recorded {events}")
    for timer in report["timers_left"][:10]:
        print(f"       timer left: {timer}")
    for job in report["jobs_failed"][:10]:
        print(f"       job failed: {job}")
    if report["twice"]:
        print(f"       twice: {report['twice'][:10]}")
    for kind in ("stop", "dtmf"):
        print(f"  {kind} 202 -> Daily: {percentiles(report['latency'][kind])}")
    if report["lost"]:
        print(f"  spool journals left: {report['spool']}")
        for name, text in report["web_logs"].items():
            print(f"  --- {name}\n{text}")
    return all(checks.values())


if __name__ == "__main__":
    sys.exit(main())

"""Catch-up end to end: a tripped breaker and a lost final webhook, with real processes.

The sandbox over HTTP, the real ``telephony serve`` (granian) as Daily's webhook target, and a
real ``telephony worker`` pool whose periodic work checks the webhook and reconciles from
presence. What is asserted is what an operator would check: the webhook is active again, and
every call reached the final state its outcome implies, no live call ended.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import WEBHOOK_SECRET, Processes, wait_for
from support.pool import pool_env
from support.servers import Granian

from telephony import webhook_health
from telephony.calls import Calls
from telephony.config import RateLimit, Settings
from telephony.daily import DailyClient
from telephony.sandbox.server import Sandbox
from telephony.store import CallStore
from telephony.validation import call_request

ANSWER, HANGUP, LOST_END = "+15550100000", "+15550100003", "+15550100096"
CHECK = 0.5  # seconds between webhook checks (and reconciliations) in these tests


class Service:
    """Sandbox, web process and worker pool on one test's settings."""

    def __init__(self, sandbox: Sandbox, settings: Settings, client: redis.Redis,
                 processes: Processes, retry_type: str) -> None:  # fmt: skip
        self.sandbox, self.settings = sandbox, settings
        self.store = CallStore(client, settings)
        self.calls = Calls(client, settings, self.store)
        self.web = Granian(settings)
        self.url = f"{self.web.url}/webhooks/daily"
        self.daily = DailyClient(sandbox.url, sandbox.api_key)
        hook = self.daily.ensure_webhook(self.url, WEBHOOK_SECRET, retry_type=retry_type)
        webhook_health.remember(self.store, hook)
        self.processes = processes
        processes.spawn(["-m", "telephony", "worker", "-n", "2"], "pool")

    def place(self, destination: str) -> str:
        room = f"r-{uuid.uuid4().hex[:8]}"  # one room each: Daily allows 5 legs in one
        call, _ = self.calls.place(call_request({"room": room, "phoneNumber": destination}))
        return str(call["id"])

    def call(self, call_id: str) -> dict[str, Any]:
        found = self.store.get(call_id)
        assert found is not None
        return found

    def states(self, ids: list[str]) -> list[str]:
        return [self.call(call_id)["state"] for call_id in ids]

    def close(self) -> None:
        self.processes.close()
        self.web.stop()
        self.daily.close()


@pytest.fixture
def service(
    settings: Settings, redis_url: str, redis_client: redis.Redis, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Service]:  # fmt: skip
    """``request.param``: the sandbox's time scale, the webhook's ``retryType`` and
    ``TELEPHONY_RECONCILE_AFTER``."""
    time_scale, retry_type, quiet = getattr(request, "param", (0.05, "exponential", "1"))
    # Presence trails by 0.5 s here; the service allows 1 s (Daily: 15 s, allowed 20 s).
    fast = RateLimit(1000, 1.0)
    with Sandbox(api_key=settings.daily_api_key.reveal(), time_scale=time_scale,
                 rate_limit=fast, presence_lag=0.5 / time_scale) as sandbox:  # fmt: skip
        env = pool_env(redis_url, settings.key_prefix, settings.queue_name,
                       DAILY_API_URL=sandbox.url, TELEPHONY_DIALOUT_LIMIT="1000/1s",
                       TELEPHONY_WEBHOOK_CHECK_INTERVAL=str(CHECK),
                       TELEPHONY_RECONCILE_AFTER=quiet, TELEPHONY_PRESENCE_LAG="1")  # fmt: skip
        found = Service(sandbox, settings, redis_client, Processes(env, tmp_path), retry_type)
        try:
            yield found
        finally:
            found.close()


def history_sources(call: dict[str, Any]) -> set[str]:
    return {entry["source"] for entry in call["history"]}


@pytest.mark.slow
def test_a_lost_final_webhook_is_reconciled_and_a_quiet_live_call_is_not(
    service: Service,
) -> None:
    lost, live = service.place(LOST_END), service.place(ANSWER)
    wait_for(lambda: service.states([lost, live]) == ["answered"] * 2, 10, "both answered")
    wait_for(lambda: service.call(lost)["state"] == "stopped", 15, "reconciliation")

    ended = service.call(lost)
    assert ended["reason"] == "reconciled"
    [last] = ended["history"][-1:]
    assert (last["event"], last["source"]) == ("call.stopped", "presence")
    assert last["data"]["learnedFrom"] == "presence" and last["data"]["absentSec"] >= 1
    # The other call was as quiet and looked at in the same checks: present, so still live.
    assert service.call(live)["state"] == "answered"
    assert service.sandbox.webhooks()[0]["state"] == "ACTIVE"
    counters = service.store.redis.hgetall(service.store.keys.metrics)
    assert counters[b"reconciled_presence"] == b"1"  # telephony_reconciled_presence_total

    service.calls.stop(live)
    wait_for(lambda: service.call(live)["state"] == "stopped", 10, "the requested stop")
    assert service.call(live)["reason"] == "stopped"


@pytest.mark.slow
# Quiet calls are not looked at here (60 s): only the re-activation sends them to presence.
@pytest.mark.parametrize("service", [(2.0, "circuit-breaker", "60")], indirect=True)
def test_a_tripped_breaker_is_reactivated_and_every_call_ends_right(service: Service) -> None:
    """Ten live calls (answered at 2 s); the web process dies before six of them hang up
    (at 6 s: Daily's attempts fail, the breaker trips and the rest are dropped); it comes back
    a few seconds later."""
    hangups = [service.place(HANGUP) for _ in range(6)]
    answers = [service.place(ANSWER) for _ in range(4)]
    everyone = hangups + answers
    wait_for(lambda: set(service.states(everyone)) == {"answered"}, 10, "all ten answered")
    port = service.web.port
    service.web.kill()
    wait_for(lambda: service.sandbox.webhooks()[0]["state"] == "FAILED", 10, "the breaker")
    ended = {s["userId"] for s in service.sandbox.sessions() if s["state"] == "stopped"}
    wait_for(lambda: ended | {s["userId"] for s in service.sandbox.sessions()
                              if s["state"] == "stopped"} >= set(hangups), 10,
             "the far ends to hang up")  # fmt: skip
    # Meanwhile the webhook checks may already replay, from Daily's log, the deliveries that
    # failed before the breaker tripped (the webhook was still ACTIVE): that is catch-up too.

    service.web = Granian(service.settings, port=port)
    wait_for(lambda: service.sandbox.webhooks()[0]["state"] == "ACTIVE", CHECK + 5, "re-activated")

    def reactivations() -> list[dict[str, Any]]:
        return [e for e in service.store.feed(0, 500) if e["event"] == "webhook.reactivated"]

    [event] = wait_for(reactivations, 2, "webhook.reactivated on the feed")  # after the POST
    assert event["data"]["downSec"] >= 0 and event["data"]["state"] == "FAILED"
    wait_for(lambda: set(service.states(hangups)) == {"stopped"}, CHECK + 5, "every hang-up")

    how = {call_id: service.call(call_id) for call_id in hangups}
    replayed = [c for c in how.values() if c["reason"] == "hangup"]
    reconciled = [c for c in how.values() if c["reason"] == "reconciled"]
    assert len(replayed) + len(reconciled) == 6 and reconciled  # the breaker dropped some
    assert all("log" in history_sources(c) for c in replayed)  # attempted: in Daily's log
    assert all("presence" in history_sources(c) for c in reconciled)
    assert set(service.states(answers)) == {"answered"}  # still in the room: still live
    for call_id in answers:
        service.calls.stop(call_id)
    wait_for(lambda: set(service.states(answers)) == {"stopped"}, 10, "the requested stops")
    assert {service.call(c)["reason"] for c in answers} == {"stopped"}

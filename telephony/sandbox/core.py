"""The simulated Daily without HTTP: every component wired together, plus reset/introspection.

:mod:`telephony.sandbox.app` is the HTTP face of this object and
:class:`telephony.sandbox.server.Sandbox` runs both; tests of the service talk HTTP, but the
introspection is the same data either way.
"""

from __future__ import annotations

import socket

from telephony import defaults
from telephony.config import RateLimit, Secret
from telephony.sandbox.delivery import DeliveryLog, Disorder
from telephony.sandbox.events import DOMAIN_ID
from telephony.sandbox.holds import Holds
from telephony.sandbox.logs import ApiLog
from telephony.sandbox.ratelimit import LocalSlidingWindow
from telephony.sandbox.scheduler import Scheduler
from telephony.sandbox.sessions import Sessions
from telephony.sandbox.starts import StartDesk, Unanswered
from telephony.sandbox.webhooks import Webhooks


class SandboxCore:
    def __init__(
        self,
        *,
        api_key: str,
        time_scale: float,
        rate_limit: RateLimit,
        test_request_timeout: float,
        delivery_timeout: float,
        presence_lag: float = defaults.SANDBOX_PRESENCE_LAG,
        room_legs: int = defaults.SANDBOX_ROOM_LEGS,
        disorder: Disorder | None = None,
    ) -> None:
        if time_scale < 0:
            raise ValueError("time_scale must not be negative")
        self.api_key = Secret(api_key)
        self.time_scale = time_scale
        #: Longest an ``early`` start response waits for its webhooks to be delivered.
        self.early_timeout = 2 * delivery_timeout
        self.api_log = ApiLog()
        self.deliveries = DeliveryLog(self.api_log)
        #: Seconds (scaled) presence trails a leg joining or leaving (Daily: up to about 15).
        self.presence_lag = presence_lag * time_scale
        self.scheduler = Scheduler()
        self.webhooks = Webhooks(
            domain_id=DOMAIN_ID,
            deliveries=self.deliveries,
            test_request_timeout=test_request_timeout,
            delivery_timeout=delivery_timeout,
            time_scale=time_scale,
            later=self.scheduler.call_later,
            disorder=disorder,
        )
        self.sessions = Sessions(
            scheduler=self.scheduler,
            publish=self.webhooks.publish,
            time_scale=time_scale,
            room_legs=room_legs,
        )
        self.desk = StartDesk(LocalSlidingWindow(rate_limit), self.sessions)
        self.holds = Holds()

    def authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        return self.api_key.matches(token.strip())

    def hold(self, unanswered: Unanswered, sock: socket.socket) -> None:
        """Leave a never-answered start hanging on ``sock`` until the client gives up, its
        (scaled) time is up, or the sandbox stops; the attempt records which."""
        seconds = max(defaults.SANDBOX_HANG_MIN, unanswered.outcome.hang * self.time_scale)
        unanswered.attempt.released = self.holds.hold(sock, seconds)

    def reset(self, *, webhooks: bool = False) -> None:
        """Forget calls, starts, deliveries, refusal counts and the rate-limit history.

        Registered webhooks stay (the demo registers one at start) unless ``webhooks``.
        """
        self.sessions.reset()
        self.scheduler.clear()
        self.webhooks.drop_queues()
        if webhooks:
            self.webhooks.close()
        self.desk.reset()
        self.deliveries.clear()
        self.api_log.clear()

    def close(self) -> None:
        self.holds.close()
        self.sessions.reset()
        self.scheduler.stop()
        self.webhooks.close()

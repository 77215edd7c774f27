"""The per-process objects every route uses, built once by the app factory."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import redis
from flask import current_app

from telephony.calls import Calls
from telephony.config import Settings
from telephony.inbound import Receiver
from telephony.keys import Keys
from telephony.spool import Spool
from telephony.store import CallStore, connect


@dataclass
class Services:
    settings: Settings
    redis: Any  # redis.Redis; its typed results are unions of every RESP shape
    store: CallStore
    receiver: Receiver
    calls: Calls

    @classmethod
    def build(cls, settings: Settings) -> Services:
        client = connect(settings, "the web server", socket_timeout=5, health_check_interval=30)
        store = CallStore(client, settings)
        receiver = Receiver(store, settings)
        receiver.spool = Spool(settings.spool_dir, receiver.apply)
        receiver.spool.adopt()  # journals of web processes that died: applied from here on
        return cls(settings, client, store, receiver, Calls(client, settings, store))

    @property
    def keys(self) -> Keys:
        return self.store.keys

    def count(self, name: str) -> None:
        """Bump a counter shown by ``/metrics``; off the hot path only (one extra command)."""
        with contextlib.suppress(redis.RedisError):
            self.redis.hincrby(self.keys.metrics, name, 1)


def services() -> Services:
    found: Services = current_app.extensions["telephony"]
    return found

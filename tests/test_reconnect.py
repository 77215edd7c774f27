"""Worker-side clients ride out a Redis restart and say so once; web clients fail fast."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import redis

from telephony.config import Settings
from telephony.redis_server import RedisServer
from telephony.store import connect


def test_a_patient_client_waits_for_redis_and_logs_the_outage_once(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = own_redis
    settings = Settings(redis_url=server.url)
    patient, impatient = connect(settings, "a worker", patient=True), connect(settings, "web")
    try:
        patient.set("k", "before")
        server.stop()
        restarter = threading.Timer(1.5, server.start)
        restarter.start()
        began = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            impatient.get("k")  # the web tier answers 503 at once
        assert time.monotonic() - began < 1.0
        with caplog.at_level(logging.WARNING, logger="telephony.reconnect"):
            for _ in range(5):  # every command of the outage waits; one line each way
                assert patient.get("k") == b"before"
        restarter.join()
        assert time.monotonic() - began >= 1.5
        lines = [r.getMessage() for r in caplog.records if r.name == "telephony.reconnect"]
        assert len(lines) == 2, lines
        assert lines[0].startswith("Redis unreachable") and lines[0].endswith("waiting for it")
        assert lines[1].startswith("Redis reachable again after")
    finally:
        patient.close()
        impatient.close()

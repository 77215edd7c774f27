"""The service's web app under granian (the production server), as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from telephony.config import Settings
from telephony.processes import stop_groups, wait_ready
from telephony.redis_server import free_port


class Granian:
    """The real ``telephony serve`` (granian running the ASGI front, one worker) in its own
    process group, configured through the environment as in production. ``port`` starts it
    again where an earlier one listened (Daily keeps posting to the same URL)."""

    def __init__(self, settings: Settings, port: int = 0) -> None:
        assert settings.redis_url and settings.webhook_secret
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(
            os.environ,
            REDIS_URL=settings.redis_url,
            DAILY_WEBHOOK_SECRET=settings.webhook_secret.reveal(),
            TELEPHONY_API_TOKEN=",".join(token.reveal() for token in settings.api_tokens),
            TELEPHONY_KEY_PREFIX=settings.key_prefix,
            TELEPHONY_SPOOL_DIR=settings.spool_dir,
        )
        args = [sys.executable, "-m", "telephony", "serve", "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", "1"]  # fmt: skip
        self.process = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            wait_ready(f"{self.url}/healthz", [self.process], timeout=15)
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL the whole server (master and worker): a crash, nothing flushed."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        stop_groups([self.process])


@contextmanager
def granian(settings: Settings) -> Iterator[str]:
    """A :class:`Granian` server for the block; yields its base URL."""
    server = Granian(settings)
    try:
        yield server.url
    finally:
        server.stop()

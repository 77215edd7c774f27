"""What the benchmark scripts share (they run as scripts: ``python bench/<name>.py``)."""

from __future__ import annotations

import contextlib
import http.client
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from telephony.processes import stop_groups

SPAWN = multiprocessing.get_context("spawn")
#: One request of a load run: its headers and its body.
Request = tuple[dict[str, str], bytes]


def version(package: str) -> str:
    """An installed package's version, for the host line every benchmark prints."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


@contextlib.contextmanager
def children(
    commands: list[list[str]], env: dict[str, str], cwd: Path, log: Path | None = None
) -> Iterator[list[Any]]:
    """Python child processes (``commands`` are their arguments), each leading its own group;
    the groups are stopped on the way out. ``log``: where their output goes (else ours)."""
    started: list[subprocess.Popen[bytes]] = []
    output = open(log, "ab") if log else None  # noqa: SIM115 - closed below
    try:
        for command in commands:
            started.append(
                subprocess.Popen(
                    [sys.executable, *command],
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT if log else None,
                    start_new_session=True,
                )
            )
        yield started
    finally:
        stop_groups(started)
        if output:
            output.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


# --- Closed-loop HTTP load: keep-alive connections, the next request once answered -------------


def connect(url: str) -> http.client.HTTPConnection:
    """A keep-alive connection to ``http://host:port``."""
    host, port = url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=10)


def post(connection: http.client.HTTPConnection, path: str, request: Request) -> int:
    """POST one request, read the whole answer; its status."""
    headers, body = request
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    if response.getheader("Connection", "").lower() == "close":  # gunicorn's sync workers
        connection.close()  # the next request opens a new one
    return response.status


def _client(
    url: str, path: str, requests: list[Request], status: int, seconds: float, start: Any, out: Any
) -> None:
    connection = connect(url)
    done = failed = 0
    start.wait(60)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            failed += post(connection, path, requests[done % len(requests)]) != status
        except (OSError, http.client.HTTPException):
            failed += 1
            connection.close()
        done += 1
    out.put((done, failed))


def closed_loop(
    url: str, path: str, parts: list[list[Request]], seconds: float, status: int
) -> tuple[int, int]:
    """One client process per part, each on one keep-alive connection, sending its part's
    requests in turn for ``seconds``, each as soon as the previous one is answered. The
    requests sent and those that failed (an answer other than ``status``, or none)."""
    start, out = SPAWN.Barrier(len(parts)), SPAWN.Queue()
    processes = [
        SPAWN.Process(target=_client, args=(url, path, part, status, seconds, start, out))
        for part in parts
    ]
    for process in processes:
        process.start()
    totals = [out.get(timeout=seconds + 90) for _ in processes]
    for process in processes:
        process.join(timeout=10)
    return sum(t[0] for t in totals), sum(t[1] for t in totals)

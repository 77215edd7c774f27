"""Stopping child processes with everything they started: no orphans, ever.

Every child the demo, the benchmarks and the tests start leads its own process group
(``start_new_session=True``), so the whole group — a granian master and its workers, an RQ
worker and its scheduler — can be signalled at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to every process of group ``pgid``; a group already gone is no error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def wait_group(pgid: int, deadline: float) -> bool:
    """Wait until group ``pgid`` has no process left (``time.monotonic()`` ``deadline``);
    whether it is gone. Members that are our children are reaped on the way: a zombie still
    counts as a member, and when we are PID 1 an orphan's zombie is ours to collect."""
    while True:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-pgid, os.WNOHANG)[0]:
                pass
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def finish_group(pgid: int, deadline: float) -> None:
    """After a SIGTERM: wait for the group until ``deadline``, then SIGKILL what is left."""
    if not wait_group(pgid, deadline):
        signal_group(pgid, signal.SIGKILL)


def end_group(pgid: int, grace: float) -> None:
    """SIGTERM group ``pgid`` (its processes can release what they hold), wait for it to be
    gone, and SIGKILL whatever is left after ``grace`` seconds."""
    signal_group(pgid, signal.SIGTERM)
    finish_group(pgid, time.monotonic() + grace)


def stop_groups(processes: Iterable[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """SIGTERM every group (a warm shutdown, all at once), wait up to ``grace`` seconds for
    each leader and the rest of its group, then SIGKILL whatever is left and reap the leaders.
    Each leader is waited for first, through ``Popen``, so its exit status is kept."""
    processes = list(processes)
    for process in processes:
        signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
        finish_group(process.pid, deadline)
        process.wait()


def wait_ready(
    url: str,
    processes: Iterable[subprocess.Popen[bytes]],
    timeout: float = 30.0,
    any_status: bool = False,
) -> None:
    """Poll ``url`` until it answers 200 (any answer with ``any_status``: the server is up);
    fail early if one of ``processes`` exits."""
    import requests

    processes = list(processes)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            raise RuntimeError(f"a process exited before {url} was ready")
        with contextlib.suppress(requests.ConnectionError, requests.Timeout):
            status = requests.get(url, timeout=1).status_code
            if status == 200 or any_status:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready within {timeout:g} s")

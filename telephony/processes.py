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


def stop_groups(processes: Iterable[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """SIGTERM every group (a warm shutdown, all at once), wait up to ``grace`` seconds, then
    SIGKILL whatever is left of each group and reap the children."""
    processes = list(processes)
    for process in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
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

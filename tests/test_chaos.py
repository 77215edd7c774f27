"""The chaos script (``bench/chaos.py``) at a small size, in both of Daily's retry modes.

Every fault at once against real processes: two web processes behind one webhook URL, a
worker pool, Redis with AOF restarted mid-run, a worker and a web process holding journalled
webhooks SIGKILLed, every webhook sent three times and late, the webhook URL down for 3 s.
Marked ``chaos``: not part of the README's test command (about 35 s a mode); ``.ci/extra``
runs it (``python -m pytest -m chaos``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.chaos


@pytest.mark.parametrize("retry_type", ["circuit-breaker", "exponential"])
def test_every_fault_at_once_and_the_books_still_tell_the_truth(retry_type: str) -> None:
    done = subprocess.run(
        [sys.executable, "bench/chaos.py", "--calls", "100", "--retry-type", retry_type,
         "--seed", "1", "--bound", "90"],
        cwd=REPO, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    report = done.stdout + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert "FAIL" not in done.stdout and "0 double dials" in done.stdout, report

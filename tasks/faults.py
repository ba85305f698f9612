"""Deterministic faults, for retries, re-queues and long waits: each outcome depends only on its arguments."""

from __future__ import annotations

import time
from pathlib import Path

from tasks.registry import task

MAX_NAP_S = 60.0
"""Longest `nap` (seconds)."""


@task
def fails_once(marker: str) -> str:
    """Fail the first time (creating `marker`), succeed every later time: a retry succeeds on attempt 2."""
    path = Path(marker)
    if not path.exists():
        path.write_text("attempted\n")
        raise RuntimeError(f"first attempt fails by design ({marker} now exists)")
    return "succeeded after a failure"


@task
def nap(seconds: float) -> float:
    """Sleep `seconds` (at most MAX_NAP_S) and return them: a job that runs long but costs no CPU."""
    if not 0 <= seconds <= MAX_NAP_S:
        raise ValueError(f"seconds must be in 0..{MAX_NAP_S}, got {seconds}")
    time.sleep(seconds)
    return seconds

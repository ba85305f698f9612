"""Compatibility only: the keyword-argument entry points `workers/lab/tickets.py` and
`workers/compare/tickets.py` still call. New code builds a `records.SaleSpec` and calls `local.run` or
`network.submit`; delete this module once those two callers have moved.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from workers.settings import Settings
from workers.tickets import local, network
from workers.tickets.records import (
    DEFAULT_LOCAL_WINDOW,
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_NETWORK_WINDOW,
    DEFAULT_WAIT_TIMEOUT,
    SaleSpec,
)


def run_local(
    settings: Settings,
    *,
    stock: int,
    buyers: int,
    mode: str,
    window: float = DEFAULT_LOCAL_WINDOW,
    path: Path | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> dict[str, Any]:
    """`local.run` with the sale spec as keywords."""
    spec = SaleSpec(mode=mode, stock=stock, buyers=buyers, window=window, lock_timeout=lock_timeout)
    return cast(dict[str, Any], local.run(settings, spec, path=path))


def submit(
    settings: Settings,
    *,
    stock: int,
    buyers: int,
    mode: str,
    per_job: int = 1,
    window: float = DEFAULT_NETWORK_WINDOW,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    party: int = 0,
    queue: str = "default",
    wait: bool = False,
    timeout: float = DEFAULT_WAIT_TIMEOUT,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> dict[str, Any]:
    """`network.submit` with the sale spec as keywords."""
    spec = SaleSpec(mode, stock, buyers, window, lock_timeout, per_job, party, queue)
    return cast(dict[str, Any], network.submit(settings, spec, wait=wait, timeout=timeout, on_progress=on_progress))

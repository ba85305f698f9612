"""The ticket sale in `mplab compare`: each mode with buyers as local processes and as RQ jobs on the nodes."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

from tasks import tickets
from workers.errors import LabError
from workers.settings import Settings
from workers.tickets import engine, manage, network


def _row(mode: str, where: str, result: dict[str, Any]) -> dict[str, Any]:
    summary = result["summary"]
    return {
        "mode": mode,
        "where": where,
        "stock": summary["stock"],
        "buyers": summary["buyers"],
        "sold": summary["sold"],
        "oversold": summary["oversold"],
        "sold_twice": summary["seats_sold_twice"],
        "purchases_per_s": round(result.get("throughput", {}).get("purchases_per_s", 0.0), 1),
        "correct": summary["oversold"] == 0 and summary["seats_sold_twice"] == 0,
    }


def measure(settings: Settings, url: str, queue: str, quick: bool, step: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every Redis mode: local buyer processes, then RQ jobs one buyer per job and K buyers per job."""
    stock, buyers, per_job = (10, 20, 10) if quick else (30, 60, 15)
    on_url = settings.with_(redis_url=url)
    rows = []
    for mode in tickets.REDIS_MODES:
        step(f"ticket sale: {mode}")
        common: dict[str, Any] = {"stock": stock, "buyers": buyers, "mode": mode}
        runs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("local processes", functools.partial(engine.run_local, on_url, window=network.DEFAULT_WINDOW, **common))
        ]
        for k in (1, per_job):
            submit = functools.partial(engine.submit, on_url, per_job=k, queue=queue, wait=True, timeout=120, **common)
            runs.append((f"RQ jobs, {k} buyer(s) per job", submit))
        for where, run in runs:
            result = run()
            rows.append(_row(mode, where, result))
            with contextlib.suppress(LabError):
                manage.delete(on_url, result["sale_id"])
    return rows


STEPS = len(tickets.REDIS_MODES)

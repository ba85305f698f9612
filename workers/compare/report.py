"""Derived figures of `mplab compare`: speedup, efficiency, overhead, crossover, targets."""

from __future__ import annotations

import math
from typing import Any

from workers.compare.local import Run
from workers.errors import ResultMismatch


def check(mode: str, workload: str, run: Run, reference: list[Any]) -> None:
    """Every mode must compute exactly what serial computed."""
    if run.values != reference:
        wrong = sum(a != b for a, b in zip(run.values, reference, strict=False)) + abs(len(run.values) - len(reference))
        raise ResultMismatch(f"{mode} on {workload}: {wrong} of {len(reference)} results differ from serial")


def row(workload: str, size: int, task_ms: float, mode: str, run: Run, serial_s: float, cores: int) -> dict[str, Any]:
    """One table row: wall, tasks/s, speedup, efficiency and overhead per task."""
    tasks = len(run.values)
    used = max(1, min(run.workers, cores))
    speedup = serial_s / run.wall_s if run.wall_s > 0 else math.inf
    out = {
        "workload": workload,
        "size": size,
        "task_ms": round(task_ms, 4),
        "mode": mode,
        "tasks": tasks,
        "workers": run.workers,
        "cores_used": used,
        "wall_s": run.wall_s,
        "tasks_per_s": tasks / run.wall_s if run.wall_s > 0 else math.inf,
        "speedup": speedup,
        "efficiency": speedup / used,
        # worker time not spent on the task itself, per task
        "overhead_ms_per_task": max(0.0, run.wall_s * used - serial_s) / tasks * 1000,
        "results_match_serial": True,
    }
    out.update(run.extra)
    drain = float(run.extra.get("drain_s", 0.0))
    if drain > 0:
        out["drain_jobs_per_s"] = int(run.extra.get("jobs", tasks)) / drain
    return out


def crossover(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Smallest CPU task size where RQ one-job-per-task reaches 90% of the best Pool efficiency."""
    sizes = sorted({r["size"] for r in rows if r["workload"] == "cpu"})
    table = []
    found = None
    for size in sizes:
        at = [r for r in rows if r["workload"] == "cpu" and r["size"] == size]
        pool = max((r["efficiency"] for r in at if r["mode"].startswith("pool")), default=None)
        rq = next((r["efficiency"] for r in at if r["mode"] == "rq per-task"), None)
        if pool is None or rq is None:
            continue
        ratio = rq / pool if pool > 0 else 0.0
        table.append({"size": size, "task_ms": at[0]["task_ms"], "pool_eff": pool, "rq_eff": rq, "ratio": ratio})
        if found is None and ratio >= 0.9:
            found = size
    hit = next((t for t in table if t["size"] == found), None)
    return {
        "rq_per_task_reaches_90pct_of_pool_at_size": found,
        "task_ms": hit["task_ms"] if hit else None,
        "by_size": table,
    }


def batch_k(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Smallest K (tasks per RQ job) whose efficiency reaches 90% of the Pool's on the K-sweep workload."""
    sweep = sorted((r for r in rows if r["workload"] == "k-sweep"), key=lambda r: r.get("batch", 1))
    pool = max((r["efficiency"] for r in sweep if r["mode"].startswith("pool")), default=0.0)
    found = next(
        (r["batch"] for r in sweep if r["mode"].startswith("rq") and pool and r["efficiency"] >= 0.9 * pool),
        None,
    )
    return {
        "pool_efficiency": pool,
        "smallest_k_hiding_overhead": found,
        "by_k": [{"k": r["batch"], "efficiency": r["efficiency"]} for r in sweep if r["mode"].startswith("rq")],
    }


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issues' benchmark targets, as ratios measured in this run (reported, never asserted)."""
    rows = result["rows"]

    def find(workload: str, mode: str, size: int | None = None) -> dict[str, Any] | None:
        return next(
            (
                r
                for r in rows
                if r["workload"] == workload and r["mode"] == mode and (size is None or r["size"] == size)
            ),
            None,
        )

    out = []

    def add(name: str, value: float | None, target: float, unit: str, higher: bool = True) -> None:
        ok = None if value is None else (value >= target if higher else value <= target)
        out.append({"target": name, "value": value, "goal": target, "unit": unit, "met": ok})

    ref = result.get("reference_size")
    pool = [r for r in rows if r["workload"] == "cpu" and r["size"] == ref and r["mode"].startswith("pool")]
    add("Pool >= 1.9x serial, 8 x ~64 ms", max((r["speedup"] for r in pool), default=None), 1.9, "x")
    rq = find("cpu", "rq per-task", ref)
    add("RQ per-task on warm nodes >= 1.85x serial, 8 x ~64 ms", rq["speedup"] if rq else None, 1.85, "x")
    batched = find("trivial", "rq batched")
    add("RQ batched trivial tasks >= 50k tasks/s", batched["tasks_per_s"] if batched else None, 50_000, "tasks/s")
    per_task = find("trivial", "rq per-task")
    forking = find("trivial", "reference: 2 stock rq workers (forking)")
    simple = find("trivial", "reference: 2 stock SimpleWorkers")
    if per_task and forking:
        add("RQ per-task trivial >= 5x two stock forking rq workers (drain jobs/s)",
            per_task["drain_jobs_per_s"] / forking["drain_jobs_per_s"], 5.0, "x")  # fmt: skip
    if per_task and simple:
        add("RQ per-task trivial >= 1.0x two stock SimpleWorkers (drain jobs/s)",
            per_task["drain_jobs_per_s"] / simple["drain_jobs_per_s"], 1.0, "x")  # fmt: skip
    enq = result.get("enqueue")
    add("enqueue_many of 2000 jobs >= 20k jobs/s", enq["enqueue_many_jobs_per_s"] if enq else None, 20_000, "jobs/s")
    header = result["header"]
    rss, pss = header.get("node_idle_rss_mb"), header.get("node_idle_pss_mb")
    pool = header.get("node_pool")
    add(
        f"node idle RSS sum (Pool({pool}) + {pool} slot(s)) <= 150 MB",
        max(rss) if rss else None,
        150,
        "MB",
        higher=False,
    )
    add(
        f"node idle PSS sum (shared pages once, Pool({pool})) <= 150 MB",
        max(pss) if pss else None,
        150,
        "MB",
        higher=False,
    )
    return out

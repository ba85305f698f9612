"""Findings of `mplab compare` drawn from its rows: the crossover, the batch size K, the targets.

Ratios are paired per round (round r of one mode against round r of the other), so their spread is
the spread of the comparison itself; a threshold inside that spread is "too close to call".
"""

from __future__ import annotations

from workers.compare.records import (
    CLOSE,
    INVALID,
    MET,
    NOT_MEASURED,
    Finding,
    Header,
    Judged,
    Row,
    Spread,
    Target,
)

THRESHOLD = 0.9
"""RQ 'catches up' with the Pool when its efficiency reaches this share of the Pool's."""


def paired_ratio(top: Spread, bottom: Spread) -> Spread:
    """Per-round ratio top/bottom (rounds paired in order; extra rounds of either side are dropped)."""
    pairs = list(zip(top.samples, bottom.samples, strict=False))
    return Spread.of([a / b if b > 0 else 0.0 for a, b in pairs])


def best_pool(rows: list[Row]) -> Row | None:
    pools = [r for r in rows if r.mode.startswith("pool") and r.valid]
    return max(pools, key=lambda r: r.efficiency.median, default=None)


def _finding(judged: list[Judged]) -> Finding:
    at = next((j for j in judged if j.verdict == MET), None)
    close = next((j for j in judged if j.verdict == CLOSE and (at is None or j.key < at.key)), None)
    return Finding(
        threshold=THRESHOLD,
        at=at.key if at else None,
        task_ms=at.task_ms if at else None,
        close_before=close.key if close else None,
        by_key=judged,
    )


def crossover(rows: list[Row]) -> Finding:
    """Smallest CPU task size where RQ one job per task reaches 90% of the best Pool's efficiency."""
    judged = []
    for size in sorted({r.size for r in rows if r.workload == "cpu"}):
        at = [r for r in rows if r.workload == "cpu" and r.size == size]
        pool = best_pool(at)
        rq = next((r for r in at if r.mode == "rq per-task" and r.valid), None)
        if pool is None or rq is None:
            continue
        ratio = paired_ratio(rq.efficiency, pool.efficiency)
        judged.append(Judged(size, rq.task_ms, ratio, ratio.against(THRESHOLD)))
    return _finding(judged)


def batch_k(rows: list[Row]) -> Finding:
    """Smallest K (tasks per RQ job) whose efficiency reaches 90% of the Pool's on the K-sweep workload."""
    sweep = [r for r in rows if r.workload == "k-sweep"]
    pool = best_pool(sweep)
    judged = []
    for r in sorted((r for r in sweep if r.rq is not None and r.valid), key=lambda r: r.rq.batch if r.rq else 0):
        if pool is None or r.rq is None:
            continue
        ratio = paired_ratio(r.efficiency, pool.efficiency)
        judged.append(Judged(r.rq.batch, r.task_ms, ratio, ratio.against(THRESHOLD)))
    return _finding(judged)


def _find(rows: list[Row], workload: str, mode: str, size: int | None = None) -> Row | None:
    found = (r for r in rows if r.workload == workload and r.mode == mode and (size is None or r.size == size))
    return next(found, None)


def _target(name: str, source: Row | None, value: Spread | None, goal: float, unit: str, higher: bool = True) -> Target:
    if source is not None and not source.valid:
        return Target(name, value, goal, unit, INVALID, higher, source.invalid_reason)
    if value is None:
        return Target(name, None, goal, unit, NOT_MEASURED, higher)
    return Target(name, value, goal, unit, value.against(goal, higher), higher)


def targets(rows: list[Row], reference_size: int, enqueue: Spread | None, header: Header) -> list[Target]:
    """The issues' benchmark targets, as ratios measured in this run (reported, never asserted)."""
    out = []
    ref = [r for r in rows if r.workload == "cpu" and r.size == reference_size]
    pools = [r for r in ref if r.mode.startswith("pool")]
    pool = max((r for r in pools if r.valid), key=lambda r: r.speedup.median, default=pools[0] if pools else None)
    out.append(_target("Pool >= 1.9x serial, 8 x ~64 ms", pool, pool.speedup if pool else None, 1.9, "x"))
    rq = _find(rows, "cpu", "rq per-task", reference_size)
    name = "RQ per-task, warm nodes >= 1.85x serial, 8 x ~64 ms"
    out.append(_target(name, rq, rq.speedup if rq else None, 1.85, "x"))
    batched = _find(rows, "trivial", "rq batched")
    out.append(_target("RQ batched trivial >= 50k tasks/s", batched, batched.tasks_per_s if batched else None,
                       50_000, "tasks/s"))  # fmt: skip
    ours = _find(rows, "trivial", "rq per-task")
    for mode, goal, what in (("stock rq workers (forking)", 5.0, "forking"), ("stock SimpleWorkers", 1.0, "Simple")):
        stock = _find(rows, "trivial", mode)
        value = None
        if ours and ours.rq and stock and stock.rq:
            value = paired_ratio(ours.rq.drain_jobs_per_s, stock.rq.drain_jobs_per_s)
        name = f"RQ per-task trivial >= {goal:g}x two stock {what} workers, drain jobs/s"
        out.append(_target(name, ours if ours and not ours.valid else stock, value, goal, "x"))
    out.append(_target("enqueue_many of 2000 jobs >= 20k jobs/s", None, enqueue, 20_000, "jobs/s"))
    pool_size = header.node_pool
    rss = Spread.of(header.node_idle_rss_mb) if header.node_idle_rss_mb else None
    pss = Spread.of(header.node_idle_pss_mb) if header.node_idle_pss_mb else None
    out.append(_target(f"node idle RSS sum, Pool({pool_size}) + {pool_size} slot(s) <= 150 MB", None, rss, 150, "MB",
                       higher=False))  # fmt: skip
    out.append(_target(f"node idle PSS sum, Pool({pool_size}) <= 150 MB", None, pss, 150, "MB", higher=False))
    return out


def fastest(rows: list[Row]) -> tuple[Row | None, Row | None]:
    """The fastest valid parallel mode at one size, and the runner-up if their speedups overlap."""
    ranked = sorted((r for r in rows if r.mode != "serial" and r.valid), key=lambda r: -r.speedup.median)
    if not ranked:
        return None, None
    best = ranked[0]
    rival = next((r for r in ranked[1:] if r.speedup.overlaps(best.speedup)), None)
    return best, rival


__all__ = ["MET", "batch_k", "crossover", "fastest", "targets"]

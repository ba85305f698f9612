"""Interleaved rounds, paired speedups and the physical-limit guard.

In every round each mode runs once, in an order rotated from round to round, so drift on a shared
machine hits every mode alike. A mode's speedup in round r is paired with the serial reference of the
same round. A median speedup above `cores_used x LIMIT_SLACK` is physically impossible: the size is
re-measured (serial and that mode, interleaved); if it persists the row is marked invalid with the
reason, and no finding or target is drawn from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import median

from workers.compare.local import Run
from workers.compare.records import Row, RqTiming, Spread
from workers.errors import ResultMismatch

LIMIT_SLACK = 1.05
"""A speedup above usable cores x this (efficiency > 105%) is a measurement error, never a result."""

Runner = Callable[[], Run]
Step = Callable[[str], None]


@dataclass(frozen=True)
class Mode:
    """A parallel mode to measure: its name, how to run it once, and the cores it can use here."""

    name: str
    run: Runner
    cores_used: int


def check(mode: str, workload: str, run: Run, reference: list[object]) -> None:
    """Every mode must compute exactly what serial computed (on the same leading items)."""
    expected = reference[: len(run.values)]
    if run.values != expected or not run.values:
        wrong = sum(a != b for a, b in zip(run.values, expected, strict=False)) + abs(len(run.values) - len(expected))
        raise ResultMismatch(f"{mode} on {workload}: {wrong} of {len(expected)} results differ from serial")


def _rotated(items: list[Mode], by: int) -> list[Mode]:
    k = by % len(items) if items else 0
    return items[k:] + items[:k]


def _per_task(run: Run) -> float:
    return run.wall_s / max(1, len(run.values))


def _rq_timing(runs: list[Run]) -> RqTiming | None:
    timed = [r.rq for r in runs if r.rq is not None]
    if not timed:
        return None

    def med(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return median(present) if present else None

    return RqTiming(
        jobs=timed[0].jobs,
        batch=timed[0].batch,
        enqueue_ms=med([t.enqueue_ms for t in timed]),
        queue_wait_ms=median(t.queue_wait_ms for t in timed),
        running_ms=median(t.running_ms for t in timed),
        result_fetch_ms=med([t.result_fetch_ms for t in timed]),
        drain_jobs_per_s=Spread.of([s for t in timed for s in t.drain_jobs_per_s.samples]),
    )


def make_row(workload: str, size: int, mode: str, cores_used: int, runs: list[Run], serials: list[Run]) -> Row:
    """The row of one mode from its runs, each paired with the serial run of the same round."""
    speedups = [
        _per_task(s) / _per_task(r) if r.wall_s > 0 else float("inf") for r, s in zip(runs, serials, strict=True)
    ]
    used = max(1, cores_used)
    overheads = [
        max(0.0, r.wall_s * used - _per_task(s) * len(r.values)) / max(1, len(r.values)) * 1000
        for r, s in zip(runs, serials, strict=True)
    ]
    speedup = Spread.of(speedups)
    return Row(
        workload=workload,
        size=size,
        task_ms=median(_per_task(s) for s in serials) * 1000,
        mode=mode,
        tasks=len(runs[0].values),
        workers=runs[0].workers,
        cores_used=used,
        rounds=len(runs),
        wall_s=Spread.of([r.wall_s for r in runs]),
        speedup=speedup,
        efficiency=speedup.scaled(1 / used),
        tasks_per_s=Spread.of([len(r.values) / r.wall_s if r.wall_s > 0 else float("inf") for r in runs]),
        overhead_ms_per_task=median(overheads),
        rq=_rq_timing(runs),
    )


def over_limit(row: Row) -> bool:
    return row.speedup.median > row.cores_used * LIMIT_SLACK


def measure_size(
    workload: str,
    size: int,
    serial: Runner,
    modes: list[Mode],
    rounds: int,
    step: Step,
    serial_shares: list[float] | None = None,
) -> list[Row]:
    """Serial and every mode in `rounds` interleaved rounds; rows with the spread; the guard applied."""
    label = f"{workload} n={size:,}" if workload != "trivial" else "trivial"
    everyone = [Mode("serial", serial, 1), *modes]
    runs: dict[str, list[Run]] = {m.name: [] for m in everyone}
    for r in range(rounds):
        for mode in _rotated(everyone, r):
            step(f"{label}: {mode.name} ({r + 1}/{rounds})")
            runs[mode.name].append(mode.run())
    serials = runs["serial"]
    if serial_shares is not None:
        serial_shares += [s.cpu_share for s in serials]
    for mode in modes:
        for run, ref in zip(runs[mode.name], serials, strict=True):
            check(mode.name, label, run, ref.values)
    rows = [make_row(workload, size, "serial", 1, serials, serials)]
    for mode in modes:
        row = make_row(workload, size, mode.name, mode.cores_used, runs[mode.name], serials)
        if over_limit(row):
            row = _remeasure(workload, size, label, serial, mode, rounds, step, row, serial_shares)
        rows.append(row)
    return rows


def _remeasure(
    workload: str,
    size: int,
    label: str,
    serial: Runner,
    mode: Mode,
    rounds: int,
    step: Step,
    first: Row,
    serial_shares: list[float] | None,
) -> Row:
    """Measure serial and `mode` again, interleaved; keep the new row, or mark it invalid if still impossible."""
    serials: list[Run] = []
    runs: list[Run] = []
    for r in range(max(2, rounds)):
        step(f"{label}: {mode.name} re-measured, {first.speedup.median:.2f}x is above the limit ({r + 1})")
        pair = [(serials, serial), (runs, mode.run)]
        for bucket, fn in pair if r % 2 == 0 else pair[::-1]:
            bucket.append(fn())
    if serial_shares is not None:
        serial_shares += [s.cpu_share for s in serials]
    for run, ref in zip(runs, serials, strict=True):
        check(mode.name, label, run, ref.values)
    row = make_row(workload, size, mode.name, mode.cores_used, runs, serials)
    row.remeasured = True
    if over_limit(row):
        row.valid = False
        row.invalid_reason = (
            f"speedup {first.speedup.median:.2f}x, then {row.speedup.median:.2f}x re-measured: above "
            f"{row.cores_used} usable core(s) x {LIMIT_SLACK}; the serial reference or the machine was disturbed"
        )
    return row

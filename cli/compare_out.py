"""`mplab compare` as text that fits 80 columns (terminal or pipe), and as CSV.

The answer comes first (crossover, batch size K, targets), then the context, then one block per
workload size with short columns. No line is longer than `WIDTH`, so nothing is wrapped or cut.
"""

from __future__ import annotations

import csv
import io
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from rich.console import Console

from workers.compare import report
from workers.compare.records import CLOSE, INVALID, MET, NOT_MET, Finding, Result, Row, Spread, Target

WIDTH = 80

SHORT = {
    "serial": "serial",
    "process per task": "process/task",
    "pool chunksize=1": "pool cs=1",
    "pool auto": "pool auto",
    "subprocess per task": "subprocess/task",
    "rq per-task": "rq per-task",
    "rq batched": "rq batched",
    "stock SimpleWorkers": "stock Simple x2",
    "stock rq workers (forking)": "stock fork x2",
}
LEGEND = (
    "pool cs=1 / auto: Pool.starmap with chunksize 1 / automatic; rq batched K: K tasks per RQ job; "
    "stock Simple x2 / fork x2: two stock `rq worker`s (SimpleWorker / one fork per job); speedup: "
    "serial time per task / mode time per task, paired by round; eff.: speedup / cores the mode can use"
)
STYLE = {MET: "green", NOT_MET: "red", CLOSE: "yellow", INVALID: "red"}


def short(mode: str, row: Row | None = None) -> str:
    if mode.startswith("rq batched K="):
        return "rq " + mode.removeprefix("rq batched ")
    name = SHORT.get(mode, mode)
    if mode == "rq batched" and row is not None and row.rq is not None:
        name = f"rq batched K={row.rq.batch}"
    return name[:16]


def size_label(n: int) -> str:
    for div, unit in ((1_000_000, "M"), (1_000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return f"{n:,}"


def rate(x: float) -> str:
    """Compact count per second: 526, 36.8k, 1.38M (at most 7 characters below 10**12)."""
    if x >= 1e9:
        return f"{x / 1e9:.2f}G"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.1f}k"
    return f"{x:,.0f}"


def num(x: float) -> str:
    """A bounded-width amount: 0.05, 12.3, 98765 (at most 7 characters below 10**7)."""
    if x >= 1e7:
        return f"{x:.1e}"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def ratio(x: float) -> str:
    """A speedup without its unit, at most 5 characters: 0.012, 1.95, 12.3, 1234, 12k."""
    if x >= 10_000:
        return f"{min(x, 99e6) / 1000:.0f}k"[:5]
    return f"{x:.3f}" if x < 0.01 else f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def pct(x: float) -> str:
    return f"{x:.0%}" if x < 10 else ">999%"


def span(s: Spread, fmt: Callable[[float], str]) -> str:
    return f"({fmt(s.low)}-{fmt(s.high)})" if len(s.samples) > 1 and s.low != s.high else ""


class Out:
    def __init__(self, console: Console) -> None:
        self.console = console

    def line(self, text: str = "", style: str | None = None) -> None:
        self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def wrapped(self, text: str, indent: str = "  ", first: str | None = None, style: str | None = None) -> None:
        lead = indent if first is None else first
        for line in textwrap.wrap(text, WIDTH - 1, initial_indent=lead, subsequent_indent=indent) or [lead]:
            self.line(line, style)


def _finding_text(f: Finding, what: str, unit: str) -> str:
    if f.at is None:
        if f.close_before is not None:
            return f"{what} too close to call at {unit.format(k=f.close_before)}; not reached at any measured size"
        return f"{what} not reached at any measured size"
    text = f"{what} reached at {unit.format(k=f.at)}" + (f" (~{f.task_ms:.1f} ms per task)" if f.task_ms else "")
    if f.close_before is not None:
        text += f"; too close to call at {unit.format(k=f.close_before)}"
    return text


def render(result: Result, console: Console) -> None:
    out = Out(console)
    h = result.header
    kind = "quick run" if h.quick else "full run"
    out.line(f"mplab compare: {kind}, {h.date}, took {h.duration_s:.1f} s")
    out.line()
    out.line("Answer")
    cross = _finding_text(result.crossover, "RQ one job per task at 90% of the Pool's efficiency:", "n={k:,}")
    out.wrapped(cross, indent="             ", first="  crossover  ")
    best = _finding_text(result.batch_k, "K tasks per RQ job at 90% of the Pool's efficiency:", "K={k}")
    out.wrapped(best, indent="             ", first="  best K     ")
    counts: dict[str, int] = {}
    for t in result.targets:
        counts[t.verdict] = counts.get(t.verdict, 0) + 1
    order = (MET, NOT_MET, CLOSE, INVALID, "not measured")
    summary = ", ".join(f"{counts[v]} {v}" for v in order if v in counts)
    out.wrapped(summary, indent="             ", first="  targets    ")
    for w in h.warnings:
        out.wrapped(w, first="  warning: ", indent="           ", style="yellow")
    out.line()
    _targets(out, result.targets)
    _context(out, result)
    for workload in ("cpu", "trivial", "k-sweep"):
        sizes = sorted({r.size for r in result.rows if r.workload == workload})
        for size in sizes:
            _block(out, [r for r in result.rows if r.workload == workload and r.size == size])
    _rq(out, result.rows)
    _latency(out, result)
    _ipc(out, result)
    _tickets(out, result)
    out.wrapped(LEGEND, first="legend: ", indent="  ")


def _ratio_fmt(x: float) -> str:
    return f"{x:,.2f}"


def _amount_fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def _targets(out: Out, targets: list[Target]) -> None:
    out.line("Targets (ratios measured in this run: median, min-max of the rounds)")
    for t in targets:
        out.wrapped(t.target, first=f"  {t.verdict:<18}", indent=" " * 20, style=STYLE.get(t.verdict))
        if t.value is not None:
            v = t.value
            fmt = _ratio_fmt if t.unit == "x" else _amount_fmt
            rng = f" {span(v, fmt)}" if span(v, fmt) else ""
            unit = t.unit if t.unit == "x" else " " + t.unit
            out.line(f"{'':20}{fmt(v.median)}{unit}{rng}, goal {t.goal:,g}{unit}")
        if t.note:
            out.wrapped(t.note, indent=" " * 20)
    out.line()


def _context(out: Out, result: Result) -> None:
    h, m = result.header, result.header.machine
    out.line("Context")
    out.wrapped(f"Python {m['python']} ({m['implementation']}), start method {m['start_method']}, {m['cores']} cores "
                f"({m['usable_cores']} usable), {m['platform']}")  # fmt: skip
    out.wrapped(f"Redis {h.redis_version}: {h.redis}")
    if h.nodes_started:
        rq = (f"RQ: {h.nodes_started} node(s) started by this run, {h.node_pool} slot(s) each, on its "
              f"private queue {h.queue}")  # fmt: skip
    else:
        rq = f"RQ: {h.rq_slots} slot(s) of the running nodes serving queue {h.queue} (--nodes 0)"
    out.wrapped(rq)
    nodes = ", ".join(f"{n.name}{' (used)' if n.used else ''}" for n in h.nodes) or "none"
    out.wrapped(f"live nodes on this Redis: {nodes}")
    share = f"{h.serial_cpu_share:.0%}"
    out.wrapped(f"load average {h.load_start} at start, {h.load_end} at end; the serial reference got {share} "
                f"of a core in its worst round; Pool start-up {h.pool_startup_ms} ms")  # fmt: skip
    if h.cleaned_runs:
        out.wrapped(f"removed what {len(h.cleaned_runs)} crashed run(s) left in Redis: {', '.join(h.cleaned_runs)}")
    out.line()


def _block(out: Out, rows: list[Row]) -> None:
    first = rows[0]
    rounds = max(r.rounds for r in rows)
    if first.workload == "trivial":
        out.line(f"Trivial tasks (pure overhead), {rounds} rounds: median (min-max)")
        out.line(f"  {'mode':<16} {'tasks':>6} {'tasks/s':>8} {'(min-max)':<17} {'overhead ms/task':>16}")
        for r in rows:
            tps = r.tasks_per_s
            cells = f"{rate(tps.median):>8} {span(tps, rate):<17}" if r.valid else f"{'invalid':>8} {'':<17}"
            out.line(f"  {short(r.mode, r):<16} {r.tasks:>6} {cells} {num(r.overhead_ms_per_task):>16}")
    else:
        what = "CPU task" if first.workload == "cpu" else "K sweep, CPU task"
        out.line(f"{what} n={first.size:,}: {first.task_ms:.1f} ms per task, {first.tasks} tasks, {rounds} rounds")
        out.line(f"  {'mode':<16} {'wall s':>7} {'speedup':>8} {'(min-max)':<13} {'eff.':>5} {'overhead ms/task':>16}")
        for r in rows:
            if r.valid:
                cells = f"{ratio(r.speedup.median) + 'x':>8} {span(r.speedup, ratio):<13} {pct(r.efficiency.median):>5}"
            else:
                cells = f"{'invalid':>8} {'':<13} {'-':>5}"
            out.line(f"  {short(r.mode, r):<16} {num(r.wall_s.median):>7} {cells} {num(r.overhead_ms_per_task):>16}")
    for r in rows:
        if not r.valid:
            out.wrapped(f"{short(r.mode, r)} invalid: {r.invalid_reason}", style="red")
    if first.workload != "trivial":
        best, rival = report.fastest(rows)
        if best is not None:
            verdict = f"too close to call with {short(rival.mode, rival)}" if rival else "spreads do not overlap"
            out.wrapped(f"fastest: {short(best.mode, best)} ({verdict})")
    out.line()


def _rq(out: Out, rows: list[Row]) -> None:
    out.line("RQ per job: means from the jobs' own timestamps (median of the rounds)")
    out.line(
        f"  {'workload, mode':<24}{'jobs':>5} {'enq ms':>7} {'wait ms':>7} {'run ms':>7} {'fetch':>7} {'drain/s':>7}"
    )
    for r in rows:
        if r.rq is None:
            continue
        t = r.rq
        where = "trivial" if r.workload == "trivial" else size_label(r.size)
        enq = "-" if t.enqueue_ms is None else num(t.enqueue_ms)
        fetch = "-" if t.result_fetch_ms is None else num(t.result_fetch_ms)
        out.line(f"  {where + ' ' + short(r.mode, r):<24}{t.jobs:>5} {enq:>7} {num(t.queue_wait_ms):>7} "
                 f"{num(t.running_ms):>7} {fetch:>7} {rate(t.drain_jobs_per_s.median):>7}")  # fmt: skip
    out.line()


def _latency(out: Out, result: Result) -> None:
    if result.latency:
        rounds = max(r.rounds for p in result.latency for r in p.rows)
        out.line(f"Network latency (--rtt): Redis behind mplab's delaying proxy, {rounds} rounds each")
        out.line(f"  {'+RTT':>6} {'ovh ms/job':>10} {'RQ jobs/s':>9} {'(min-max)':<15} {'vs 2 stock':>10} "
                 f"{'crossover':>10} {'K':>4}")  # fmt: skip
        for p in result.latency:
            js = p.jobs_per_s
            vs = "-" if p.vs_stock_simple is None else ratio(p.vs_stock_simple.median) + "x"
            cross = "none" if p.crossover.task_ms is None else f"{p.crossover.task_ms:,.1f}ms"
            k = "none" if p.batch_k.at is None else str(p.batch_k.at)
            out.line(f"  {p.rtt_ms:>4g}ms {num(p.overhead_ms_per_job):>10} {rate(js.median):>9} {span(js, rate):<15} "
                     f"{vs:>10} {cross:>10} {k:>4}")  # fmt: skip
        out.wrapped("crossover: smallest task (serial ms) at which RQ one job per task reaches 90% of the Pool's "
                    "efficiency; K: smallest batch at 90% on the K-sweep task; vs 2 stock: drain jobs/s against "
                    "two stock SimpleWorkers behind the same proxy", first="  ", indent="  ")  # fmt: skip
        out.line()
    if result.wire:
        out.line("Redis traffic per job (counted: INFO commandstats, round trips at the proxy)")
        out.line(f"  {'worker':<20} {'tasks/job':>9} {'commands/job':>12} {'round trips/job':>15}")
        for w in result.wire:
            out.line(f"  {w.worker:<20} {w.batch:>9} {w.commands_per_job:>12.1f} {w.round_trips_per_job:>15.1f}")
        out.line()


def _ipc(out: Out, result: Result) -> None:
    if result.enqueue_jobs_per_s is not None and result.enqueue_one_by_one_jobs_per_s is not None:
        e, one = result.enqueue_jobs_per_s, result.enqueue_one_by_one_jobs_per_s
        rq_many = result.enqueue_rq_many_jobs_per_s
        ref = f", RQ's own enqueue_many {rate(rq_many.median)} {span(rq_many, rate)}" if rq_many else ""
        out.wrapped(f"enqueue: mplab's submit path (one pipeline) {rate(e.median)} jobs/s {span(e, rate)}{ref}, "
                    f"one at a time {rate(one.median)} jobs/s {span(one, rate)}", first="", indent="  ")  # fmt: skip
        out.line()
    out.line("IPC round trip, 100 bytes, to an echo process: median (min-max)")
    for row in result.ipc:
        us = row.rtt_us
        out.line(f"  {row.channel:<22}{num(us.median):>8} us {span(us, num):<17} {rate(1e6 / us.median):>7} msgs/s")
    out.line()


def _tickets(out: Out, result: Result) -> None:
    if not result.tickets:
        return
    first = result.tickets[0]
    out.line(f"Ticket sale: {first.stock} tickets, {first.buyers} buyers (counted from the ledger)")
    out.line(f"  {'mode':<11}{'buyers are':<21}{'sold':>7}{'over':>7}{'twice':>7}{'buys/s':>8}")
    for r in result.tickets:
        style = None if r.correct else "red"
        line = f"  {r.mode:<11}{r.where:<21}{r.sold:>7}{r.oversold:>7}{r.sold_twice:>7}{num(r.purchases_per_s):>8}"
        out.line(line, style)
    out.line()


CsvRow = dict[str, str | float]
"""One CSV line: column -> number, flag or text ('' where a mode has no such figure)."""


def flat(row: Row) -> CsvRow:
    """A row's figures as one CSV line: each spread as median, min, max and its samples."""
    out: CsvRow = {k: getattr(row, k) for k in ("workload", "size", "task_ms", "mode", "tasks", "workers",
                                                          "cores_used", "rounds")}  # fmt: skip
    for name in ("wall_s", "speedup", "efficiency", "tasks_per_s"):
        s: Spread = getattr(row, name)
        out |= {f"{name}_median": s.median, f"{name}_min": s.low, f"{name}_max": s.high}
        out[f"{name}_samples"] = ";".join(f"{x:.6g}" for x in s.samples)
    out |= {"overhead_ms_per_task": row.overhead_ms_per_task, "valid": row.valid,
            "invalid_reason": row.invalid_reason, "remeasured": row.remeasured}  # fmt: skip
    t = row.rq
    out |= {
        "rq_jobs": t.jobs if t else "",
        "rq_batch": t.batch if t else "",
        "enqueue_ms": t.enqueue_ms if t and t.enqueue_ms is not None else "",
        "queue_wait_ms": t.queue_wait_ms if t else "",
        "running_ms": t.running_ms if t else "",
        "result_fetch_ms": t.result_fetch_ms if t and t.result_fetch_ms is not None else "",
        "drain_jobs_per_s_median": t.drain_jobs_per_s.median if t else "",
    }
    return out


def write_csv(rows: list[Row], target: Path | TextIO) -> None:
    flats = [flat(r) for r in rows]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(flats[0]) if flats else ["workload"])
    writer.writeheader()
    writer.writerows(flats)
    if isinstance(target, Path):
        target.write_text(buf.getvalue())
    else:
        target.write(buf.getvalue())
        target.flush()

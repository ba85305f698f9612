"""The `mplab compare --plot` figure: speedup vs task size, RQ/Pool efficiency with the crossover, the K sweep.

matplotlib is the optional `plot` extra; this module is imported only when --plot is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cli.compare_out import short
from workers.compare.records import Result, Row
from workers.compare.report import THRESHOLD, best_pool, paired_ratio

IN_HOST = ("process per task", "pool chunksize=1", "pool auto", "subprocess per task")
RQ = ("rq per-task", "rq batched")


def _series(ax: Any, rows: list[Row], mode: str, style: str) -> None:
    pts = sorted((r for r in rows if r.mode == mode and r.valid), key=lambda r: r.task_ms)
    if not pts:
        return
    x = [r.task_ms for r in pts]
    y = [r.speedup.median for r in pts]
    err = [[r.speedup.median - r.speedup.low for r in pts], [r.speedup.high - r.speedup.median for r in pts]]
    fmt = "o" if len(pts) <= 2 else style  # two sizes are two points, not a trend
    ax.errorbar(x, y, yerr=err, fmt=fmt, capsize=3, label=short(mode), markersize=4)


def write(result: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = result.header
    cpu = [r for r in result.rows if r.workload == "cpu"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 5.2))
    for mode in IN_HOST:
        _series(ax1, cpu, mode, "-o")
    for mode in RQ:
        _series(ax1, cpu, mode, "--s")
    usable = h.machine["usable_cores"]
    ideal = min(usable, max((r.cores_used for r in cpu), default=usable))
    ax1.axhline(ideal, color="black", linewidth=1, linestyle=":", label=f"ideal: {ideal} usable cores")
    ax1.axhline(1.0, color="grey", linewidth=0.8)
    ax1.set_xscale("log")
    ax1.set_xlabel("task size (ms of serial CPU per task)")
    ax1.set_ylabel("speedup vs serial (median, bars: min-max of rounds)")
    ax1.set_title("speedup vs task size (solid: in-host, dashed: RQ)")
    ax1.legend(fontsize=8)

    xs, ys, lo, hi = [], [], [], []
    for j in result.crossover.by_key:
        xs.append(j.task_ms)
        ys.append(j.ratio.median)
        lo.append(j.ratio.median - j.ratio.low)
        hi.append(j.ratio.high - j.ratio.median)
    if xs:
        ax2.errorbar(xs, ys, yerr=[lo, hi], fmt="o" if len(xs) <= 2 else "-o", capsize=3, label="RQ per-task / Pool")
    for point in result.latency:  # one crossover curve per added round-trip time (--rtt)
        by = point.crossover.by_key
        if by:
            ax2.errorbar([j.task_ms for j in by], [j.ratio.median for j in by],
                         yerr=[[j.ratio.median - j.ratio.low for j in by], [j.ratio.high - j.ratio.median for j in by]],
                         fmt="o" if len(by) <= 2 else "--^", capsize=3, markersize=4,
                         label=f"+{point.rtt_ms:g} ms RTT (proxy)")  # fmt: skip
    ax2.axhline(THRESHOLD, color="red", linestyle="--", linewidth=1, label=f"{THRESHOLD:.0%}: crossover")
    if result.crossover.task_ms:
        ax2.axvline(result.crossover.task_ms, color="red", linewidth=0.8, linestyle=":")
    ax2.set_xscale("log")
    highs = [j.ratio.high for j in result.crossover.by_key] + [j.ratio.high for p in result.latency
                                                                 for j in p.crossover.by_key]  # fmt: skip
    ax2.set_ylim(0, max([1.2, *(h + 0.05 for h in highs)]))
    ax2.set_xlabel("task size (ms of serial CPU per task)")
    ax2.set_ylabel("RQ efficiency / best Pool efficiency")
    ax2.set_title("where RQ one job per task catches up")
    ax2.legend(fontsize=8)

    sweep = [r for r in result.rows if r.workload == "k-sweep"]
    pool = best_pool(sweep)
    ks = [r for r in sweep if r.rq is not None and r.valid]
    if ks and pool is not None:
        ratios = [paired_ratio(r.efficiency, pool.efficiency) for r in ks]
        kx = [r.rq.batch for r in ks if r.rq is not None]
        ax3.errorbar(kx, [q.median for q in ratios], yerr=[[q.median - q.low for q in ratios],
                     [q.high - q.median for q in ratios]], fmt="o" if len(kx) <= 2 else "-o", capsize=3,
                     label=f"RQ batched / Pool (tasks of {ks[0].task_ms:.1f} ms)")  # fmt: skip
        ax3.set_xscale("log", base=2)
    ax3.axhline(THRESHOLD, color="red", linestyle="--", linewidth=1, label=f"{THRESHOLD:.0%} of the Pool")
    ax3.set_ylim(0, max([1.2, *(j.ratio.high + 0.05 for j in result.batch_k.by_key)]))
    ax3.set_xlabel("K: tasks per RQ job")
    ax3.set_ylabel("efficiency / best Pool efficiency")
    ax3.set_title("batch size K hiding the per-job overhead")
    ax3.legend(fontsize=8)

    kind = "quick" if h.quick else "full"
    fig.suptitle(
        f"mplab compare ({kind} run, {h.date}): Python {h.machine['python']}, start method "
        f"{h.machine['start_method']}, {h.machine['usable_cores']} usable cores, Redis {h.redis_version}, "
        f"{h.rq_slots} RQ slots"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""`mplab compare`: local Pool vs network task queue, measured side by side on this machine."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.base import console, err_console, print_json, settings_of
from workers import compare as engine
from workers.errors import ConfigError
from workers.redis_server import redis_for
from workers.settings import default_pool_size


def compare(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="A smaller run (under ~20 s on 2 cores).")] = False,
    nodes: Annotated[
        int | None,
        typer.Option("--nodes", help="Worker nodes to start (0: use nodes already running).", show_default="cores"),
    ] = None,
    node_pool: Annotated[int, typer.Option("--node-pool", help="Slots (and Pool processes) per started node.")] = 1,
    queue: Annotated[str, typer.Option("--queue", "-q", help="Queue the RQ modes use.")] = "default",
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the full result as JSON to FILE ('-': stdout).")
    ] = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Write the rows as CSV to FILE.")] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Plot speedup vs task size to FILE.png (needs mplab[plot]).")
    ] = None,
) -> None:
    """Run the same workloads serial, with a Process per task, a Pool, subprocesses, and RQ nodes; compare.

    Workloads: CPU-bound tasks over a sweep of sizes, trivial tasks (pure overhead), the ticket sale, and
    IPC round trips. Every mode's results are checked against serial. Nodes it starts are stopped after.
    """
    settings = settings_of(ctx)
    settings.check_queue(queue)
    opts = engine.Options(
        quick=quick, nodes=default_pool_size() if nodes is None else nodes, node_pool=node_pool, queue=queue
    )
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ConfigError("--plot needs matplotlib: pip install 'mplab[plot]'") from None
    to_stdout = json_file is not None and str(json_file) == "-"
    for path in (json_file, csv_file, plot):  # fail before a long run, not after it
        if path is not None and str(path) != "-" and not os.access(path.parent.resolve(), os.W_OK):
            raise ConfigError(f"cannot write {path}: {path.parent} is not a writable directory")
    with redis_for(settings.redis_url, settings.state_dir) as (url, where):
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err_console, transient=True,
        ) as progress:  # fmt: skip
            bar = progress.add_task("starting", total=None)

            def on_step(label: str, total: int) -> None:
                progress.update(bar, description=label, total=total, advance=1)

            result = engine.run(settings, url, where, opts, on_step)
    if to_stdout:
        print_json(result)
    else:
        render(result)
        if json_file is not None:
            json_file.write_text(json.dumps(result, indent=2, default=str))
            console.print(f"JSON written to {json_file}")
    if csv_file is not None:
        write_csv(result["rows"], csv_file)
    if plot is not None:
        write_plot(result["rows"], plot)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(result: dict[str, Any]) -> None:
    h = result["header"]
    console.print(
        f"[bold]mplab compare[/bold]: Python {h['python']}, start method {h['start_method']}, "
        f"{h['cores']} cores ({h['usable_cores']} usable), Redis {h['redis_version']} ({h['redis']}), "
        f"RQ slots {h['rq_slots']}, Pool start-up {h['pool_startup_ms']} ms, run took {h['duration_s']} s"
    )
    for workload in ("cpu", "trivial", "k-sweep"):
        table = Table(title=f"workload: {workload}")
        for col in (
            "n",
            "task ms",
            "mode",
            "tasks",
            "wall s",
            "tasks/s",
            "speedup",
            "eff.",
            "overhead ms/task",
        ):
            table.add_column(col, justify="left" if col == "mode" else "right")
        for r in (r for r in result["rows"] if r["workload"] == workload):
            table.add_row(
                str(r["size"]), f"{r['task_ms']:.3f}", r["mode"], str(r["tasks"]), f"{r['wall_s']:.3f}",
                f"{r['tasks_per_s']:,.0f}", f"{r['speedup']:.2f}x", f"{r['efficiency']:.0%}",
                f"{r['overhead_ms_per_task']:.3f}",
            )  # fmt: skip
        console.print(table)
    rq = Table(title="RQ breakdown (means per job, from the jobs' own timestamps)")
    for col in (
        "workload",
        "n",
        "mode",
        "jobs",
        "enqueue ms",
        "in queue ms",
        "running ms",
        "fetch ms",
        "drain jobs/s",
    ):
        rq.add_column(col, justify="left" if col in ("workload", "mode") else "right")
    for r in (r for r in result["rows"] if "queue_wait_ms" in r):
        rq.add_row(
            r["workload"], str(r["size"]), r["mode"], str(r.get("jobs", "-")), _fmt(r.get("enqueue_ms"), ".1f"),
            f"{r['queue_wait_ms']:.1f}", f"{r['running_ms']:.2f}", _fmt(r.get("result_fetch_ms"), ".1f"),
            _fmt(r.get("drain_jobs_per_s"), ",.0f"),
        )  # fmt: skip
    console.print(rq)
    cross = result["crossover"]
    at = cross["rq_per_task_reaches_90pct_of_pool_at_size"]
    console.print(
        f"crossover: RQ one-job-per-task reaches 90% of the Pool's efficiency at n={at} "
        f"(~{_fmt(cross['task_ms'], '.1f')} ms per task); batch size hiding the per-job overhead: "
        f"K={result['batch_k']['smallest_k_hiding_overhead']}"
    )
    ipc_table = Table(title="IPC round trip, 100 bytes")
    ipc_table.add_column("channel")
    ipc_table.add_column("RTT µs", justify="right")
    ipc_table.add_column("msgs/s one at a time", justify="right")
    for r in result["ipc"]:
        ipc_table.add_row(r["channel"], f"{r['rtt_us']:.1f}", f"{r['msgs_per_s_one_at_a_time']:,.0f}")
    console.print(ipc_table)
    if result.get("tickets"):
        tickets_table = Table(title="ticket sale (oversold and seats sold twice are counted from the ledger)")
        for col in ("mode", "buyers are", "stock", "buyers", "sold", "oversold", "sold twice", "purchases/s"):
            tickets_table.add_column(col, justify="left" if col in ("mode", "buyers are") else "right")
        for r in result["tickets"]:
            style = "" if r["correct"] else "red"
            tickets_table.add_row(
                r["mode"], r["where"], str(r["stock"]), str(r["buyers"]), str(r["sold"]), str(r["oversold"]),
                str(r["sold_twice"]), f"{r['purchases_per_s']:.0f}", style=style,
            )  # fmt: skip
        console.print(tickets_table)
    targets = Table(title="targets (ratios measured in this run)")
    for col in ("target", "value", "goal", "met"):
        targets.add_column(col)
    for t in result["targets"]:
        met = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "-"}[t["met"]]
        targets.add_row(t["target"], f"{_fmt(t['value'], ',.2f')} {t['unit']}", f"{t['goal']:,} {t['unit']}", met)
    console.print(targets)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    console.print(f"CSV written to {path}")


def write_plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    cpu = [r for r in rows if r["workload"] == "cpu" and r["mode"] != "serial"]
    for mode in sorted({r["mode"] for r in cpu}):
        pts = sorted((r["task_ms"], r["speedup"]) for r in cpu if r["mode"] == mode)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=mode)
    ax.set_xscale("log")
    ax.set_xlabel("task size (ms of serial CPU per task)")
    ax.set_ylabel("speedup vs serial")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.legend()
    ax.set_title("mplab compare: speedup vs task size")
    fig.tight_layout()
    fig.savefig(path)
    console.print(f"plot written to {path}")

"""`mplab compare`: local Pool vs network task queue, measured side by side on this machine."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli import compare_out
from cli.base import console, err_console, settings_of
from workers.compare import plan, records, runner
from workers.redis_server import redis_for
from workers.settings import Settings, default_pool_size

STDOUT = "-"


def _usage(message: str) -> typer.Exit:
    """One red line, printed as is (no Rich markup: `mplab[plot]` must stay readable), exit code 2."""
    err_console.print("error: " + message, style="red", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def _check_writable(path: str | None, what: str) -> Path | None:
    if path is None or path == STDOUT:
        return None
    target = Path(path)
    if not path or "\n" in path or target.is_dir() or not os.access(target.parent.resolve(), os.W_OK):
        raise _usage(f"cannot write {what} to {path}: not a file in a writable directory")
    return target


def compare(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="A smaller run (about 20 s on 2 cores).")] = False,
    nodes: Annotated[
        int | None,
        typer.Option(
            "--nodes",
            help=f"Worker nodes to start, 0-{plan.MAX_NODES} (0: use nodes already running; see --queue).",
            show_default="usable cores",
        ),
    ] = None,
    node_pool: Annotated[
        int,
        typer.Option("--node-pool", help=f"Slots (and Pool processes) per started node, 1-{plan.MAX_NODE_POOL}."),
    ] = 1,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            "-q",
            help="With --nodes 0: the queue the running nodes serve (must be empty).",
            show_default="default",
        ),  # fmt: skip
    ] = None,
    node_names: Annotated[
        str | None,
        typer.Option("--node-names", help="With --nodes 0: use exactly these nodes (comma-separated)."),
    ] = None,
    rtt: Annotated[
        str | None,
        typer.Option(
            "--rtt",
            help="Also run the RQ modes with Redis behind a delaying proxy, per added round-trip time in ms "
            f"(comma-separated, each 0-1000, at most {plan.MAX_RTTS}), e.g. 0,1,10. Adds time.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full result as JSON on stdout (nothing else).")
    ] = False,
    output_path: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the full result as JSON to FILE ('-': stdout).")
    ] = None,
    csv_path_: Annotated[
        Path | None, typer.Option("--csv", help="Write every row as CSV to FILE ('-': stdout).")
    ] = None,
    plot_path_: Annotated[
        Path | None, typer.Option("--plot", help="Plot the findings to FILE.png (needs mplab\\[plot]).")
    ] = None,
) -> None:
    """Run the same workloads serial, with a Process per task, a Pool, subprocesses and RQ nodes; compare.

    Workloads: CPU-bound tasks over a sweep of sizes, trivial tasks (pure overhead, with stock RQ workers
    as reference), a batch-size sweep, enqueue rate, IPC round trips and the ticket sale. Each size runs
    interleaved rounds; every mode's results are checked against serial. The run uses private queues and
    its own nodes, and leaves nothing behind in Redis.
    """
    settings = settings_of(ctx)
    output, csv_file, plot = (None if p is None else str(p) for p in (output_path, csv_path_, plot_path_))
    names = tuple(n.strip() for n in node_names.split(",") if n.strip()) if node_names is not None else ()
    if node_names is not None and not names:
        raise _usage("--node-names needs at least one node name")
    rtts: tuple[float, ...] = ()
    if rtt is not None:
        try:
            rtts = tuple(float(x) for x in rtt.split(","))
        except ValueError:
            raise _usage(f"--rtt takes milliseconds separated by commas, e.g. 0,1,10; got {rtt!r}") from None
    opts = plan.Options(
        quick=quick,
        rtts=rtts,
        nodes=default_pool_size() if nodes is None else nodes,
        node_pool=node_pool,
        queue=queue,
        node_names=names,
    )
    json_out = as_json or output == STDOUT
    if json_out and csv_file == STDOUT:
        raise _usage("JSON and CSV cannot both go to stdout: give --csv a file name")
    json_path = _check_writable(output, "JSON")
    csv_path = _check_writable(csv_file, "CSV")
    plot_path = _check_writable(plot, "the plot")
    if plot is not None:
        if plot == STDOUT:
            raise _usage("--plot needs a file name (FILE.png)")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise _usage("--plot needs matplotlib: pip install 'mplab[plot]'") from None
    with redis_for(settings.redis_url, settings.state_dir) as (url, where):
        result = _run(settings, url, where, opts)
    data = result.to_json()
    if json_out:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif csv_file != STDOUT:
        compare_out.render(result, console)
    if json_path is not None:
        json_path.write_text(json.dumps(data, indent=2, default=str))
        err_console.print(f"JSON written to {json_path}", markup=False, highlight=False)
    if csv_file is not None:
        compare_out.write_csv(result.rows, sys.stdout if csv_path is None else csv_path)
        if csv_path is not None:
            err_console.print(f"CSV written to {csv_path}", markup=False, highlight=False)
    if plot_path is not None:
        from cli import compare_plot

        compare_plot.write(result, plot_path)
        err_console.print(f"plot written to {plot_path}", markup=False, highlight=False)


def _run(settings: Settings, url: str, where: str, opts: plan.Options) -> records.Result:
    """The run, with a progress line on a terminal that is redrawn only between measurements.

    No refresh thread (`auto_refresh=False`): a render thread in the measuring process takes the GIL
    and slowed a CPU loop by ~18% here; nothing is drawn while a mode runs.
    """
    if not err_console.is_terminal:
        return runner.run(settings, url, where, opts, lambda label, total: None)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True, auto_refresh=False) as progress:
        bar = progress.add_task("starting nodes", total=None)
        progress.refresh()

        def on_step(label: str, total: int) -> None:
            progress.update(bar, description=label[:60], total=total, advance=1)
            progress.refresh()

        return runner.run(settings, url, where, opts, on_step)

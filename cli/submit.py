"""`mplab submit ...`: put work on a queue, and with --wait follow it to the end."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.base import Conn, JsonOpt, console, err_console, finite, new_app, open_redis, print_json
from workers import client as jobclient
from workers import defaults, heartbeat
from workers.settings import check_queue_name
from workers.submit import CpuSummary, submit_cpu, summarize

app = new_app("Enqueue work for the worker nodes (RQ jobs, JSON serializer).")

QueueOpt = Annotated[str, typer.Option("--queue", "-q", help="Queue to put the jobs on (any valid name).")]
RetryOpt = Annotated[
    int, typer.Option("--retry", min=0, max=defaults.MAX_RETRIES, help="Retry a failed job up to N times (RQ Retry).")
]
RetryIntervalOpt = Annotated[
    int,
    typer.Option(
        "--retry-interval",
        min=0,
        max=defaults.MAX_RETRY_INTERVAL,
        help="Seconds between retries (0: at once).",
    ),
]
JobTimeoutOpt = Annotated[
    int,
    typer.Option("--job-timeout", min=1, max=defaults.MAX_JOB_TIMEOUT, help="Seconds a job may run before it fails."),
]
ResultTtlOpt = Annotated[
    int, typer.Option("--result-ttl", min=1, max=defaults.MAX_RESULT_TTL, help="Seconds results are kept.")
]
WaitOpt = Annotated[bool, typer.Option("--wait", "-w", help="Show progress until all results are in, then a summary.")]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=0.1,
        max=defaults.MAX_WAIT,
        callback=finite,
        help="With --wait: give up after this many seconds (the jobs stay queued; exit 1).",
    ),
]


@app.command("cpu")
def cpu(
    ctx: typer.Context,
    tasks: Annotated[int, typer.Option("--tasks", "-t", min=1, max=defaults.MAX_TASKS, help="How many tasks.")] = 8,
    size: Annotated[
        int,
        typer.Option(
            "--size",
            "-s",
            min=0,
            max=defaults.MAX_TASK_SIZE,
            help="n in sum(i*i for i in range(n)); 2000000 ~ 64 ms.",
        ),
    ] = 2_000_000,
    batch: Annotated[
        int,
        typer.Option(
            "--batch",
            "-b",
            min=1,
            max=defaults.MAX_BATCH_ITEMS,
            help="Tasks per job (>1: one batch job fanned out on a node's Pool).",
        ),
    ] = 1,
    queue: QueueOpt = "default",
    wait: WaitOpt = False,
    timeout: TimeoutOpt = defaults.WAIT_TIMEOUT,
    retry: RetryOpt = 0,
    retry_interval: RetryIntervalOpt = 0,
    job_timeout: JobTimeoutOpt = defaults.JOB_TIMEOUT,
    result_ttl: ResultTtlOpt = defaults.RESULT_TTL,
    json: JsonOpt = False,
) -> None:
    """Enqueue the chapter's CPU-bound task (sum of squares) as RQ jobs, in one pipeline."""
    check_queue_name(queue)
    options = jobclient.JobOptions(job_timeout, result_ttl, retry, retry_interval)
    what = "`submit --wait`" if wait else "`submit`"
    with open_redis(ctx, needs=what) as conn:
        if wait:
            _check_served(conn, queue)
        jobs = submit_cpu(conn.client, queue, tasks, size, batch, options)
        ids = [job.id for job in jobs]
        if not wait:
            if json:
                print_json({"queue": queue, "jobs": ids, "tasks": tasks})
            else:
                console.print(f"enqueued {len(ids)} job(s) carrying {tasks} task(s) on {queue!r} ({conn.where})")
                for job_id in ids:
                    console.print(job_id, highlight=False)
            return
        with Progress(
            TextColumn("tasks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err_console, transient=True, disable=json,
        ) as progress:  # fmt: skip
            bar = progress.add_task("tasks", total=tasks)
            outcome = jobclient.wait(
                conn.client, jobs, timeout=timeout, on_progress=lambda d, t: progress.update(bar, completed=d)
            )
    summary = summarize(outcome, queue, size, batch)
    if json:
        print_json(summary)
    else:
        _render(summary)
    if outcome.timed_out:
        err_console.print(
            f"[red]error:[/red] {outcome.statuses['timeout']} job(s) had not ended after {timeout:g} s; "
            "they stay queued (see `mplab jobs`)",
            highlight=False,
        )
    if not summary.ok:
        raise typer.Exit(code=1)


def _check_served(conn: Conn, queue: str) -> None:
    """Warn when no live node takes jobs from `queue` (the wait would only end at its timeout)."""
    live = heartbeat.live_nodes(conn.client)
    if not live:
        err_console.print(
            f"[yellow]warning:[/yellow] no live worker node on {conn.where}: the jobs wait until one starts "
            "(`mplab worker`) or --timeout",
            highlight=False,
        )
    elif not any(node.serves(queue) for node in live):
        err_console.print(
            f"[yellow]warning:[/yellow] no live node serves queue {queue!r} (start one with `--queues {queue}`)",
            highlight=False,
        )


def _render(summary: CpuSummary) -> None:
    table = Table(title="submit cpu", show_header=False)
    table.add_row("wall time", f"{summary.wall_s:.3f} s")
    table.add_row("tasks done", str(summary.tasks_done))
    table.add_row("jobs", ", ".join(f"{k}: {v}" for k, v in summary.jobs.items()))
    table.add_row("sum of task CPU time", f"{summary.task_cpu_s:.3f} s")
    table.add_row("wrong results", str(summary.wrong_results))
    console.print(table)
    per = Table(title="tasks per node / pid")
    per.add_column("node:pid")
    per.add_column("tasks", justify="right")
    for key, count in sorted(summary.tasks_per_pid.items()):
        per.add_row(key, str(count))
    console.print(per)
    for job_id, reason in summary.failures.items():
        err_console.print(f"[red]failed[/red] {job_id}: {reason}", highlight=False)

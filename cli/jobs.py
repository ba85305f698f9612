"""`mplab submit ...`, `mplab status`, `mplab result`: put work on the queues and read it back."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.base import console, err_console, new_app, print_json, settings_of
from workers import jobs
from workers.redis_server import connect, redis_for

submit_app = new_app("Enqueue work for the worker nodes (RQ jobs, JSON serializer).")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON only.")]


@submit_app.command("cpu")
def submit_cpu(
    ctx: typer.Context,
    tasks: Annotated[int, typer.Option("--tasks", "-t", help="How many tasks.")] = 8,
    size: Annotated[
        int, typer.Option("--size", "-s", help="n in sum(i*i for i in range(n)); 2_000_000 ~ 64 ms.")
    ] = 2_000_000,
    batch: Annotated[
        int,
        typer.Option("--batch", "-b", help="Tasks per job (>1: one batch job fanned out on a node's Pool)."),
    ] = 1,
    queue: Annotated[str, typer.Option("--queue", "-q", help="Queue to put the jobs on.")] = "default",
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Show progress until all results are in, then a summary.")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Enqueue the chapter's CPU-bound task (sum of squares) as RQ jobs, in one pipeline."""
    settings = settings_of(ctx)
    settings.check_queue(queue)
    jobs.check_cpu_args(tasks, size, batch)
    with contextlib.ExitStack() as stack:
        shared_for = None if wait else "`submit` without --wait (the jobs must stay for the nodes)"
        url, where = stack.enter_context(redis_for(settings.redis_url, settings.state_dir, shared_for=shared_for))
        client = stack.enter_context(connect(url))
        job_list, sizes = jobs.submit_cpu(client, queue, tasks, size, batch)
        ids = [job.id for job in job_list]
        if not wait:
            if json:
                print_json({"queue": queue, "jobs": ids, "tasks": tasks})
            else:
                console.print(f"enqueued {len(ids)} job(s) carrying {tasks} task(s) on {queue!r} ({where})")
                for job_id in ids:
                    console.print(job_id, highlight=False)
            return
        with Progress(
            TextColumn("tasks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err_console, transient=True, disable=json,
        ) as progress:  # fmt: skip
            bar = progress.add_task("tasks", total=tasks)
            outcome = jobs.wait_for(client, job_list, sizes, on_progress=lambda d, t: progress.update(bar, completed=d))
        summary = {
            "queue": queue,
            "size": size,
            "batch": batch,
            "job_ids": ids,
            **jobs.summarize(outcome, size),
        }
    if json:
        print_json(summary)
    else:
        _render_summary(summary)
    if summary["failures"] or summary["wrong_results"]:
        raise typer.Exit(code=1)


def _render_summary(summary: dict[str, object]) -> None:
    table = Table(title="submit cpu", show_header=False)
    table.add_row("wall time", f"{summary['wall_s']:.3f} s")
    table.add_row("tasks done", str(summary["tasks_done"]))
    table.add_row("jobs", ", ".join(f"{k}: {v}" for k, v in summary["jobs"].items()))  # type: ignore[attr-defined]
    table.add_row("sum of task CPU time", f"{summary['task_cpu_s']:.3f} s")
    table.add_row("wrong results", str(summary["wrong_results"]))
    console.print(table)
    per = Table(title="tasks per node / pid")
    per.add_column("node:pid")
    per.add_column("tasks", justify="right")
    for key, count in sorted(summary["tasks_per_pid"].items()):  # type: ignore[attr-defined]
        per.add_row(key, str(count))
    console.print(per)
    for job_id, reason in summary["failures"].items():  # type: ignore[attr-defined]
        err_console.print(f"[red]failed[/red] {job_id}: {reason}", highlight=False)


def status(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Queues with job counts per registry; nodes with heartbeat age, CPU %, RSS and busy/total slots."""
    settings = settings_of(ctx)
    with redis_for(settings.redis_url, settings.state_dir) as (url, where):
        with connect(url) as client:
            info = jobs.status(client, settings.queues)
    info["redis"] = where
    if json:
        print_json(info)
        return
    qt = Table(title=f"queues ({where})")
    for col in ("queue", "queued", "started", "finished", "failed"):
        qt.add_column(col, justify="left" if col == "queue" else "right")
    for row in info["queues"]:
        qt.add_row(*(str(row[c]) for c in ("queue", "queued", "started", "finished", "failed")))
    console.print(qt)
    nt = Table(title="nodes")
    for col in (
        "node",
        "host/pid",
        "beat age",
        "CPU %",
        "RSS",
        "slots busy/total",
        "done",
        "failed",
        "state",
    ):
        nt.add_column(col)
    for node in info["nodes"]:
        age = f"{node['age_s']:.1f} s" + (" [red]STALE[/red]" if node["stale"] else "")
        nt.add_row(
            node["name"], f"{node['host']}/{node['pid']}", age, f"{node['cpu_percent']:.0f}",
            f"{node['rss_bytes'] / 2**20:.0f} MB", f"{node['slots_busy']}/{node['slots_total']}",
            str(node["jobs_done"]), str(node["jobs_failed"]), node.get("state", ""),
        )  # fmt: skip
    console.print(nt if info["nodes"] else "no nodes (start one with `mplab worker`)")
    if info["other_rq_workers"]:
        console.print(f"other RQ workers: {', '.join(info['other_rq_workers'])}")


def result(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job id printed by `mplab submit`.")],
    json: JsonOpt = False,
) -> None:
    """Show one job: status, timings, and its result or failure reason."""
    settings = settings_of(ctx)
    with redis_for(settings.redis_url, settings.state_dir) as (url, _where):
        with connect(url) as client:
            report = jobs.job_report(client, job_id)
    if json:
        print_json(report)
        return
    table = Table(show_header=False, title=f"job {job_id}")
    for key in ("status", "function", "queue", "worker", "enqueued_at", "started_at", "ended_at"):
        table.add_row(key, str(report.get(key)))
    if "result" in report:
        table.add_row("result", str(report["result"]))
    if "reason" in report:
        table.add_row("reason", f"[red]{report['reason']}[/red]")
    console.print(table)
    if report["status"] == "failed":
        raise typer.Exit(code=1)

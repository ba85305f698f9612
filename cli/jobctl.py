"""`mplab result`, `mplab jobs`, `mplab cancel`, `mplab requeue`, `mplab purge`: read and act on jobs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cli.base import JsonOpt, console, err_console, open_redis, print_json, settings_of
from workers import defaults, jobctl
from workers.jobctl import Action, JobReport, State
from workers.settings import check_queue_name

NEEDS = "`{}`"
QueueOpt = Annotated[
    str | None, typer.Option("--queue", "-q", help="Only this queue (any valid name).", show_default="all queues")
]


def result(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job id printed by `mplab submit`.")],
    traceback: Annotated[bool, typer.Option("--traceback", help="Show the whole error of a failed job.")] = False,
    json: JsonOpt = False,
) -> None:
    """Show one job: status, timings, batch progress, and its result or failure reason. Exit 1 if it failed."""
    jobctl.check_job_id(job_id)
    with open_redis(ctx, needs=NEEDS.format("result")) as conn:
        report = jobctl.job_report(conn.client, job_id, traceback=traceback)
    if json:
        print_json(report)
    else:
        _render_report(report)
    if report.failed:
        raise typer.Exit(code=1)


def _render_report(report: JobReport) -> None:
    table = Table(show_header=False, title=f"job {report.id}", box=box.SIMPLE)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for key in ("status", "function", "queue", "worker", "enqueued_at", "started_at", "ended_at"):
        table.add_row(key, escape(str(getattr(report, key) or "-")))
    if report.progress is not None:
        table.add_row("progress", f"{report.progress.done}/{report.progress.total} tasks")
    if report.retries_left is not None:
        table.add_row("retries left", str(report.retries_left))
    for note in report.interruptions:
        table.add_row("interrupted", escape(note))
    if report.status == "finished":
        table.add_row("result", escape(str(report.result)))
    if report.reason:
        table.add_row("reason", f"[red]{escape(report.reason)}[/red]")
    console.print(table)
    if report.traceback:
        console.print(report.traceback, highlight=False, markup=False)


def jobs(
    ctx: typer.Context,
    status: Annotated[
        list[State] | None,
        typer.Option("--status", "-s", help="Only jobs in this state (repeatable).", show_default="all states"),
    ] = None,
    queue: QueueOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=defaults.MAX_LIST, help="At most this many.")] = 50,
    json: JsonOpt = False,
) -> None:
    """List jobs by state (queued, started, finished, failed, ...), failed ones with their reason."""
    if queue is not None:
        check_queue_name(queue)
    with open_redis(ctx, needs=NEEDS.format("jobs")) as conn:
        queues = (
            [check_queue_name(queue)]
            if queue is not None
            else jobctl.known_queues(conn.client, settings_of(ctx).queues)
        )
        rows = jobctl.list_jobs(conn.client, queues, status or list(State), limit)
    if json:
        print_json(rows)
        return
    if not rows:
        console.print(f"no jobs ({', '.join(s.value for s in status or State)}) on {', '.join(queues)}")
        return
    for row in rows:  # one line per job, ids never folded; the function and reason on an indented line
        console.print(f"{row.id}  {row.status:<9} {row.queue}", highlight=False, soft_wrap=True)
        console.print(f"    {escape(row.function)}", highlight=False, soft_wrap=True)
        if row.reason:
            console.print(f"    [red]{escape(row.reason)}[/red]", highlight=False, soft_wrap=True)


IdsArg = Annotated[list[str] | None, typer.Argument(help="Job ids, as printed by `mplab submit`.", show_default=False)]


def _report(actions: list[Action], json: bool) -> None:
    if json:
        print_json(actions)
    else:
        for action in actions:
            (console if action.done else err_console).print(f"{action.id}: {action.note}", highlight=False)
    if not actions or not all(a.done for a in actions):
        raise typer.Exit(code=1)


def cancel(ctx: typer.Context, job_ids: IdsArg = None, json: JsonOpt = False) -> None:
    """Cancel jobs that have not started: they leave their queue and never run. Exit 1 if any could not be."""
    if not job_ids:
        raise typer.BadParameter("give at least one job id", param_hint="JOB_IDS")
    with open_redis(ctx, needs=NEEDS.format("cancel")) as conn:
        actions = jobctl.cancel(conn.client, job_ids)
    _report(actions, json)


def requeue(
    ctx: typer.Context,
    job_ids: IdsArg = None,
    failed: Annotated[bool, typer.Option("--failed", help="Re-queue every failed job (of --queue, or all).")] = False,
    queue: QueueOpt = None,
    json: JsonOpt = False,
) -> None:
    """Put failed (or canceled) jobs back on their queue. Exit 1 if any could not be."""
    if bool(job_ids) == failed:
        raise typer.BadParameter("give job ids or --failed (one of the two)", param_hint="JOB_IDS / --failed")
    if queue is not None:
        check_queue_name(queue)
    with open_redis(ctx, needs=NEEDS.format("requeue")) as conn:
        if failed:
            queues = (
                [check_queue_name(queue)]
                if queue is not None
                else jobctl.known_queues(conn.client, settings_of(ctx).queues)
            )
            actions = jobctl.requeue_failed(conn.client, queues)
            if not actions:
                console.print(f"no failed jobs on {', '.join(queues)}")
                return
        else:
            actions = jobctl.requeue(conn.client, job_ids or [])
    _report(actions, json)


def purge(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="The queue to empty.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    json: JsonOpt = False,
) -> None:
    """Delete every queued job of one queue (running and ended jobs are kept)."""
    check_queue_name(queue)
    with open_redis(ctx, needs=NEEDS.format("purge")) as conn:
        waiting = jobctl.queued(conn.client, queue)
        if waiting and not yes and not typer.confirm(f"delete the {waiting} queued job(s) of {queue!r}?"):
            err_console.print("not purged")
            raise typer.Exit(code=1)
        removed = jobctl.purge(conn.client, queue)
    if json:
        print_json({"queue": queue, "removed": removed})
    else:
        console.print(f"removed {removed} queued job(s) from {queue!r}")

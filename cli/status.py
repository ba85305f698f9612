"""`mplab status [--watch]`: queues, nodes and their slots, live; readable at 80 columns and when piped."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich import box
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cli.base import Conn, JsonOpt, console, err_console, finite, open_redis, print_json, settings_of
from workers import client, defaults, monitor
from workers.monitor import NodeView, StatusReport

NEEDS = "`status`"
COUNTS = ("queued", "started", "finished", "failed", "deferred", "scheduled", "canceled")


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def _queues(report: StatusReport) -> Table:
    table = Table(
        title=f"queues ({report.redis})", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False,
        collapse_padding=True, padding=(0, 1),
    )  # fmt: skip
    table.add_column("queue", overflow="fold", min_width=5)
    for col in COUNTS:
        table.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    for row in report.queues:
        table.add_row(row.queue, *(str(getattr(row, col)) for col in COUNTS))
    return table


def _node(node: NodeView) -> RenderableType:
    stale = " [red]STALE[/red]" if node.stale else ""
    head = Text.from_markup(
        f"[bold]node {node.name}[/bold] {node.host}/{node.pid} {node.state}; beat {node.age_s:.1f} s ago{stale}; "
        f"queues {','.join(node.queues) or '?'}; {node.start_method}; "
        f"CPU {node.cpu_percent:.0f} %; RSS {_mb(node.rss_bytes)}, PSS {_mb(node.pss_bytes)} "
        f"({node.processes} processes); slots {node.slots_busy}/{node.slots_total} busy; "
        f"jobs done {node.jobs_done}, failed {node.jobs_failed}"
    )
    pool = " ".join(map(str, node.pool_pids)) if node.pool_pids is not None else "unknown (not on this host)"
    lines = [head, Text(f"  Pool pids: {pool}")]
    for slot in node.slots:  # ids are never folded: a slot is one line, what it runs the next
        lines.append(Text(f"  {slot.name} pid {slot.pid or '-'} {slot.state} {slot.job_id or ''}".rstrip()))
        if slot.job_id:
            details = [slot.function or "?"]
            if slot.elapsed_s is not None:
                details.append(f"{slot.elapsed_s:.1f} s")
            if slot.progress:
                details.append(f"{slot.progress.done}/{slot.progress.total} tasks done")
            lines.append(Text(f"      {', '.join(details)}"))
    return Group(*lines)


def render(report: StatusReport) -> RenderableType:
    """The whole view as one renderable (a table of queues, a block per node)."""
    parts: list[RenderableType] = [_queues(report)]
    if report.nodes:
        parts += [_node(node) for node in report.nodes]
    else:
        parts.append(Text("no nodes (start one with `mplab worker`)"))
    if report.other_rq_workers:
        parts.append(Text(f"other RQ workers: {', '.join(report.other_rq_workers)}"))
    if report.empty:
        parts.append(Text("this Redis is empty: no job in any queue or registry, no node", style="yellow"))
    parts.append(Text(f"updated at {report.updated_at}", style="dim"))
    return Group(*parts)


def status(
    ctx: typer.Context,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C (a live view).")] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", "-n", min=0.2, max=3600, callback=finite, help="Seconds between refreshes with --watch."
        ),
    ] = defaults.WATCH_INTERVAL,
    json: JsonOpt = False,
) -> None:
    """Queues per registry; nodes (heartbeat age, CPU %, RSS, PSS, Pool pids) and their slots' current jobs.

    Each slot shows its job id, function, elapsed time and batch progress. --watch refreshes the view until
    Ctrl-C; piped or with --json it prints one snapshot after another (JSON: one document per line).
    """
    settings = settings_of(ctx)
    with open_redis(ctx, needs=NEEDS) as conn:
        if not watch:
            report = monitor.snapshot(conn.client, settings.queues, conn.where)
            if json:
                print_json(report)
            else:
                console.print(render(report))
            return
        if json or not console.is_terminal:  # piped: one snapshot after another, never cursor tricks
            while True:
                frame = _snapshot(conn, settings.queues, interval)
                if isinstance(frame, Text):
                    err_console.print(frame)
                elif json:
                    print_json(frame, one_line=True)
                else:
                    console.print(render(frame))
                    console.print()
                time.sleep(interval)
        with Live(console=console, auto_refresh=False, screen=False, transient=False) as live:
            while True:
                frame = _snapshot(conn, settings.queues, interval)
                live.update(frame if isinstance(frame, Text) else render(frame), refresh=True)
                time.sleep(interval)


def _snapshot(conn: Conn, queues: tuple[str, ...], interval: float) -> StatusReport | Text:
    """A snapshot, or while Redis is unreachable (restarting, a blip) one line saying so: the watch goes on."""
    try:
        return monitor.snapshot(conn.client, queues, conn.where)
    except client.LOST as exc:
        return Text(f"Redis unreachable ({exc}); retrying every {interval:g} s (Ctrl-C stops)", style="red")

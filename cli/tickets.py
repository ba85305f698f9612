"""`mplab tickets`: the chapter's ticket sale (6.5), on this host and across worker nodes, counted."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.base import console, err_console, new_app, print_json, settings_of
from tasks import tickets
from workers.errors import ConfigError
from workers.redis_server import connect, redis_for
from workers.settings import machine_facts
from workers.tickets import bench as bench_mod
from workers.tickets import engine, manage, network

app = new_app("The chapter's ticket sale (6.5): oversell without a lock, and which locks still hold across hosts.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output only.")]
StockOpt = Annotated[int, typer.Option(help="Tickets on sale.")]
BuyersOpt = Annotated[int, typer.Option(help="Buyers, each trying to buy one ticket.")]
LockTimeoutOpt = Annotated[
    float, typer.Option(help="redis-lock: seconds before Redis expires a lock whose holder died.")
]


@app.command()
def local(
    ctx: typer.Context,
    mode: Annotated[str, typer.Option(help="unsafe | lock (file store); or a Redis mode, see `submit`.")],
    stock: StockOpt = 5,
    buyers: BuyersOpt = 7,
    window: Annotated[float, typer.Option(help="Race window: seconds between a buyer's read and write.")] = (
        engine.DEFAULT_LOCAL_WINDOW
    ),
    file: Annotated[Path | None, typer.Option(help="ticket.json to use (default: under the state dir).")] = None,
    lock_timeout: LockTimeoutOpt = engine.DEFAULT_LOCK_TIMEOUT,
    json_out: JsonOpt = False,
) -> None:
    """Buyers are processes on this host, released together by a Barrier (the chapter's experiment)."""
    result = engine.run_local(
        settings_of(ctx),
        stock=stock,
        buyers=buyers,
        mode=mode,
        window=window,
        path=file,
        lock_timeout=lock_timeout,
    )
    if json_out:
        print_json(result)
        return
    console.print(f"sale [bold]{result['sale_id']}[/bold]: {tickets.MODE_HELP[mode]}")
    render_outcomes(result["outcomes"])
    render_summary(result)


@app.command()
def submit(
    ctx: typer.Context,
    mode: Annotated[str, typer.Option(help="naive | host-lock | redis-lock | atomic | watch")],
    stock: StockOpt = 100,
    buyers: BuyersOpt = 200,
    per_job: Annotated[int, typer.Option(help="Buyers per RQ job (run on the node's Pool processes).")] = 1,
    window: Annotated[float, typer.Option(help="Race window: seconds between a buyer's GET and SET.")] = (
        network.DEFAULT_WINDOW
    ),
    party: Annotated[
        int,
        typer.Option(
            help="Buyers the start barrier waits for (at most --buyers); 0 = the slots of live nodes serving --queue."
        ),
    ] = 0,
    queue: Annotated[str, typer.Option(help="Queue to enqueue the buyer jobs on.")] = "default",
    lock_timeout: LockTimeoutOpt = engine.DEFAULT_LOCK_TIMEOUT,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the sale to the end and report it.")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after this many seconds.")] = 300.0,
    json_out: JsonOpt = False,
) -> None:
    """Buyers are RQ jobs spread over the worker nodes; the outcome is counted from the sale's ledger."""
    with Progress(
        TextColumn("[bold]buyers[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[sold]} sold"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not wait,
    ) as bar:
        task = bar.add_task("sale", total=buyers, sold=0)

        def on_progress(done: int, total: int, sold: int) -> None:
            bar.update(task, completed=done, total=total, sold=sold)

        result = engine.submit(
            settings_of(ctx),
            stock=stock,
            buyers=buyers,
            mode=mode,
            per_job=per_job,
            window=window,
            lock_timeout=lock_timeout,
            party=party,
            queue=queue,
            wait=wait,
            timeout=timeout,
            on_progress=on_progress,
        )
    if json_out:
        print_json(result)
        return
    nodes = result["nodes_at_submit"]
    console.print(
        f"sale [bold]{result['sale_id']}[/bold]: {result['buyers']} buyers in {result['jobs']} job(s) "
        f"on queue {result['queue']!r}, barrier party {result['party']}, "
        f"live nodes: {', '.join(f'{n} ({s} slots)' for n, s in nodes.items()) or 'none'}"
    )
    if not nodes:
        err_console.print(
            f"[yellow]no live worker node serves queue {result['queue']!r} on this Redis: "
            "the jobs wait until one starts[/yellow]"
        )
    if wait:
        render_summary(result)
        states = result.get("job_states", {})
        failed = states.get("by_status", {}).get("failed", 0)
        if failed:
            err_console.print(f"[yellow]{failed} job(s) failed, e.g.: {states['first_error']}[/yellow]")
    else:
        console.print(f"follow it with: mplab tickets report {result['sale_id']}")


@app.command()
def report(
    ctx: typer.Context,
    sale_id: Annotated[str, typer.Argument(help="Sale id printed by `local` or `submit`.")],
    rows: Annotated[bool, typer.Option("--rows", help="Also list every buyer's outcome.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Re-read a sale's ledger and count its outcome."""
    result = manage.report(settings_of(ctx), sale_id)
    if json_out:
        print_json(result)
        return
    if rows:
        render_outcomes(result["outcomes"])
    render_summary(result)


@app.command()
def reset(ctx: typer.Context, sale_id: Annotated[str, typer.Argument()], json_out: JsonOpt = False) -> None:
    """Put a sale's stock back and empty its ledger (same id, same parameters)."""
    result = manage.reset(settings_of(ctx), sale_id)
    print_json(result) if json_out else console.print(f"sale {sale_id}: reset to {result['stock']} tickets")


@app.command()
def delete(ctx: typer.Context, sale_id: Annotated[str, typer.Argument()], json_out: JsonOpt = False) -> None:
    """Delete a sale: its ledger and counter (Redis keys or files)."""
    manage.delete(settings_of(ctx), sale_id)
    print_json({"sale_id": sale_id, "deleted": True}) if json_out else console.print(f"sale {sale_id}: deleted")


@app.command()
def bench(
    ctx: typer.Context,
    attempts: Annotated[int, typer.Option(help="Sequential attempts per mode and repetition.")] = 3000,
    repeats: Annotated[int, typer.Option(help="Interleaved repetitions (the median is reported).")] = 3,
    json_out: JsonOpt = False,
) -> None:
    """One client, sequential purchase attempts/s per mode, as ratios to the bare GET/SET path."""
    if attempts < 1 or repeats < 1:
        raise ConfigError(f"attempts and repeats must be >= 1, got {attempts} and {repeats}")
    settings = settings_of(ctx)
    with redis_for(settings.redis_url, settings.state_dir) as (url, description):
        client = connect(url)
        try:
            result = bench_mod.run(client, attempts=attempts, repeats=repeats)
        finally:
            client.close()
    result["redis"] = description
    result["machine"] = machine_facts(settings.start_method)
    if json_out:
        print_json(result)
        return
    table = Table(title=f"one client, {attempts} sequential attempts, median of {repeats} ({description})")
    for column in ("mode", "attempts/s", "x getset", "x naive"):
        table.add_column(column, justify="right" if column != "mode" else "left")
    for mode, per_s in result["per_s"].items():
        table.add_row(
            mode,
            f"{per_s:,.0f}",
            f"{result['ratio_to_getset'][mode]:.2f}",
            f"{result['ratio_to_naive'][mode]:.2f}",
        )
    console.print(table)


def render_outcomes(outcomes: list[dict[str, Any]]) -> None:
    table = Table(title="buyers")
    for column in ("buyer", "node", "pid", "read", "outcome"):
        table.add_column(column)
    for row in outcomes:
        outcome = f"[green]seat {row['seat']}[/green]" if "seat" in row else f"[red]{row.get('reason', '?')}[/red]"
        table.add_row(
            str(row["buyer"]),
            str(row.get("node", "")),
            str(row.get("pid", "")),
            str(row.get("read", "")),
            outcome,
        )
    console.print(table)


def render_summary(result: dict[str, Any]) -> None:
    s = result["summary"]
    table = Table(title=f"sale {result['sale_id']} ({result.get('mode') or result.get('meta', {}).get('mode')})")
    table.add_column("what")
    table.add_column("count", justify="right")
    twice = ", ".join(f"seat {seat} x{n}" for seat, n in list(s["seats_sold_twice_detail"].items())[:8])
    facts = [
        ("stock", s["stock"]),
        ("buyers", s["buyers"]),
        ("sold (ledger rows)", s["sold"]),
        ("oversold", s["oversold"]),
        ("seats sold twice", f"{s['seats_sold_twice']} {('(' + twice + ')') if twice else ''}".strip()),
        ("final counter", s["final_counter"]),
        ("lost updates (sold - counter drop)", s["lost_updates"]),
        ("failed buyers", s["failed_buyers"]),
        ("missing buyers (no outcome)", s["missing_buyers"]),
    ]
    for node, n in s["sold_per_node"].items():
        facts.append((f"sold by node {node}", n))
    for key, label in (
        ("purchases_per_s", "purchases/s"),
        ("attempts_per_s", "attempts/s"),
        ("elapsed_s", "seconds"),
    ):
        value = result.get("throughput", {}).get(key)
        if value is not None:
            facts.append((label, f"{value:,.1f}"))
    for what, value in facts:
        table.add_row(what, str(value))
    console.print(table)
    verdict = "[green]correct[/green]" if s["correct"] else "[red]WRONG: oversold or lost updates[/red]"
    console.print(f"{s['sold']} sold of {s['stock']} for {s['buyers']} buyers: {verdict}")

"""`mplab tickets`: the chapter's ticket sale (6.5), on this host and across worker nodes, counted.

Every number takes a finite range (shown in `--help`, the limits of `workers.tickets.records`); NaN and
infinities are refused like any other out-of-range value: one line, exit code 2 (the fuzz test holds us to it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.base import Conn, console, err_console, new_app, open_redis, print_json, settings_of
from tasks import tickets
from tasks.tickets import Outcome
from workers.errors import NotFound
from workers.redis_server import read_state
from workers.settings import machine_facts
from workers.tickets import bench as bench_mod
from workers.tickets import local as local_sale
from workers.tickets import manage, network
from workers.tickets import records as r
from workers.tickets.records import SaleReport, SaleSpec

app = new_app("The chapter's ticket sale (6.5): oversell without a lock, and which locks still hold across hosts.")


def _seconds(help_text: str, low: float, high: float) -> typer.models.OptionInfo:
    """A float option of seconds in [low, high]; typer refuses NaN too (it fails `x <= high`)."""
    option: typer.models.OptionInfo = typer.Option(help=help_text, min=low, max=high)
    return option


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output only.")]
StockOpt = Annotated[int, typer.Option(help="Tickets on sale.", min=0, max=r.STOCK_MAX)]
LockTimeoutOpt = Annotated[
    float,
    _seconds("redis-lock: seconds before Redis expires a lock whose holder died.", 0.001, r.LOCK_TIMEOUT_MAX),
]
SaleIdArg = Annotated[str, typer.Argument(help="Sale id printed by `local` or `submit`.")]


@app.command()
def local(
    ctx: typer.Context,
    mode: Annotated[str, typer.Option(help="unsafe | lock (file store); or a Redis mode, see `submit`.")],
    stock: StockOpt = 5,
    buyers: Annotated[
        int, typer.Option(help="Buyers, each a process trying to buy one ticket.", min=1, max=r.LOCAL_MAX_BUYERS)
    ] = 7,
    window: Annotated[
        float, _seconds("Race window: seconds between a buyer's read and write.", 0, r.WINDOW_MAX)
    ] = r.DEFAULT_LOCAL_WINDOW,
    file: Annotated[
        Path | None,
        typer.Option(help="ticket.json to create, in an existing directory (default: under the state dir)."),
    ] = None,
    lock_timeout: LockTimeoutOpt = r.DEFAULT_LOCK_TIMEOUT,
    json_out: JsonOpt = False,
) -> None:
    """Buyers are processes on this host, released together by a Barrier (the chapter's experiment)."""
    spec = local_sale.check(SaleSpec(mode=mode, stock=stock, buyers=buyers, window=window, lock_timeout=lock_timeout))
    with open_redis(ctx) if mode in tickets.REDIS_MODES else contextlib.nullcontext() as conn:
        result = local_sale.run(settings_of(ctx), spec, path=file, conn=conn)
    if json_out:
        print_json(result)
        return
    console.print(f"sale [bold]{result['sale_id']}[/bold] ({mode}):")
    console.print(escape(tickets.MODE_HELP[mode]), soft_wrap=True)
    render_outcomes(result["outcomes"])
    render_summary(result)


@app.command()
def submit(
    ctx: typer.Context,
    mode: Annotated[str, typer.Option(help="naive | host-lock | redis-lock | atomic | watch")],
    stock: StockOpt = 100,
    buyers: Annotated[
        int, typer.Option(help="Buyers, each trying to buy one ticket.", min=1, max=r.NETWORK_MAX_BUYERS)
    ] = 200,
    per_job: Annotated[
        int, typer.Option(help="Buyers per RQ job (run on the node's Pool processes).", min=1, max=r.PER_JOB_MAX)
    ] = 1,
    window: Annotated[
        float, _seconds("Race window: seconds between a buyer's GET and SET.", 0, r.WINDOW_MAX)
    ] = r.DEFAULT_NETWORK_WINDOW,
    party: Annotated[
        int,
        typer.Option(
            help="Buyers the start barrier waits for (at most --buyers); 0 = the slots of live nodes serving --queue.",
            min=0,
            max=r.NETWORK_MAX_BUYERS,
        ),
    ] = 0,
    queue: Annotated[str, typer.Option(help="Queue to enqueue the buyer jobs on.")] = "default",
    lock_timeout: LockTimeoutOpt = r.DEFAULT_LOCK_TIMEOUT,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the sale to the end and report it.")] = False,
    timeout: Annotated[
        float, _seconds("With --wait: give up after this many seconds.", 0.1, r.WAIT_TIMEOUT_MAX)
    ] = r.DEFAULT_WAIT_TIMEOUT,
    json_out: JsonOpt = False,
) -> None:
    """Buyers are RQ jobs spread over the worker nodes; the outcome is counted from the sale's ledger."""
    spec = SaleSpec(
        mode=mode,
        stock=stock,
        buyers=buyers,
        window=window,
        lock_timeout=lock_timeout,
        per_job=per_job,
        party=party,
        queue=queue,
    )
    settings = settings_of(ctx)
    network.check(settings, spec, timeout)  # a usage error is one line before any Redis is sought
    # the nodes must reach the sale's Redis: a private embedded one (gone with this command) is refused
    shared_for = "`tickets submit --wait`" if wait else "`tickets submit` (its buyer jobs wait there for the nodes)"
    with (
        open_redis(ctx, needs=shared_for) as conn,
        Progress(
            TextColumn("[bold]buyers[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[sold]} sold"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=not wait,
        ) as bar,
    ):
        task = bar.add_task("sale", total=buyers, sold=0)

        def on_progress(done: int, total: int, sold: int) -> None:
            bar.update(task, completed=done, total=total, sold=sold)

        result = network.submit(settings, conn, spec, wait=wait, timeout=timeout, on_progress=on_progress)
    if json_out:
        print_json(result)
        return
    nodes = result["nodes_at_submit"]
    console.print(
        f"sale [bold]{result['sale_id']}[/bold]: {result['buyers']} buyers in {result['jobs']} job(s) "
        f"on queue {escape(repr(result['queue']))}, barrier party {result['party']}",
        soft_wrap=True,
    )
    console.print(
        f"live nodes: {escape(', '.join(f'{n} ({s} slots)' for n, s in nodes.items())) or 'none'}", soft_wrap=True
    )
    if not nodes:
        err_console.print(
            f"[yellow]no live worker node serves queue {escape(repr(result['queue']))} on this Redis: "
            "the jobs wait until one starts[/yellow]",
            soft_wrap=True,
        )
    if wait:
        render_summary(result)
        states = result.get("job_states")
        failed = states["by_status"].get("failed", 0) if states else 0
        if states and failed:
            first = escape(str(states["first_error"]))
            err_console.print(f"[yellow]{failed} job(s) failed, e.g.: {first}[/yellow]", soft_wrap=True)
    else:
        console.print(f"follow it with: mplab tickets report {result['sale_id']}", soft_wrap=True)


@app.command()
def report(
    ctx: typer.Context,
    sale_id: SaleIdArg,
    rows: Annotated[bool, typer.Option("--rows", help="Also list every buyer's outcome.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Re-read a sale's ledger and count its outcome."""
    result = manage.report(settings_of(ctx), sale_id, lambda: _redis_holding(ctx, sale_id))
    if json_out:
        print_json(result)
        return
    if rows:
        render_outcomes(result["outcomes"])
    render_summary(result)


@app.command()
def reset(ctx: typer.Context, sale_id: SaleIdArg, json_out: JsonOpt = False) -> None:
    """Put a sale's stock back and empty its ledger (same id, same parameters)."""
    result = manage.reset(settings_of(ctx), sale_id, lambda: _redis_holding(ctx, sale_id))
    print_json(result) if json_out else console.print(f"sale {sale_id}: reset to {result['stock']} tickets")


@app.command()
def delete(ctx: typer.Context, sale_id: SaleIdArg, json_out: JsonOpt = False) -> None:
    """Delete a sale: its ledger and counter (Redis keys or files)."""
    manage.delete(settings_of(ctx), sale_id, lambda: _redis_holding(ctx, sale_id))
    print_json({"sale_id": sale_id, "deleted": True}) if json_out else console.print(f"sale {sale_id}: deleted")


@contextlib.contextmanager
def _redis_holding(ctx: typer.Context, sale_id: str) -> Iterator[Conn]:
    """The Redis a sale that is not a file sale of this host can be in: --redis-url or the `redis up` server.

    A fresh embedded Redis cannot hold any earlier sale, so none is started to look in.
    """
    settings = settings_of(ctx)
    if not settings.redis_url and read_state(settings.state_dir) is None:
        raise NotFound(
            f"no ticket sale {sale_id!r} on this host, and no Redis (--redis-url / `mplab redis up`) to look in"
        )
    with open_redis(ctx) as conn:
        yield conn


@app.command()
def bench(
    ctx: typer.Context,
    attempts: Annotated[
        int, typer.Option(help="Sequential attempts per mode and repetition.", min=1, max=r.BENCH_ATTEMPTS_MAX)
    ] = 3000,
    repeats: Annotated[
        int, typer.Option(help="Interleaved repetitions (the median is reported).", min=1, max=r.BENCH_REPEATS_MAX)
    ] = 3,
    json_out: JsonOpt = False,
) -> None:
    """One client, sequential purchase attempts/s per mode, as ratios to the bare GET/SET path."""
    r.check_bench(attempts, repeats)
    with open_redis(ctx) as conn:
        result = bench_mod.run(conn.client, attempts=attempts, repeats=repeats)
    result["redis"] = conn.where
    result["machine"] = machine_facts(settings_of(ctx).start_method)
    if json_out:
        print_json(result)
        return
    console.print(f"on the {escape(conn.where)}", soft_wrap=True)
    table = Table(title=f"one client, {attempts} sequential attempts, median of {repeats}", box=box.SIMPLE_HEAD)
    for column in ("mode", "attempts/s", "x getset", "x naive"):
        table.add_column(column, justify="right" if column != "mode" else "left", no_wrap=True)
    for mode, per_s in result["per_s"].items():
        table.add_row(
            mode,
            f"{per_s:,.0f}",
            f"{result['ratio_to_getset'][mode]:.2f}",
            f"{result['ratio_to_naive'][mode]:.2f}",
        )
    console.print(table)


def render_outcomes(outcomes: list[Outcome]) -> None:
    """One line per buyer, at any terminal width from 80 columns (and piped): no column wraps."""
    table = Table(title="buyers", box=box.SIMPLE_HEAD)
    for column in ("buyer", "node", "pid", "read", "outcome"):
        table.add_column(column, no_wrap=True, justify="right" if column in ("pid", "read") else "left")
    for row in outcomes:
        seat = row.get("seat")
        outcome = f"[green]seat {seat}[/green]" if seat is not None else f"[red]{escape(row.get('reason', '?'))}[/red]"
        table.add_row(
            escape(str(row.get("buyer", "?"))),
            escape(str(row.get("node", ""))),
            str(row.get("pid", "")),
            str(row.get("read", "")),
            outcome,
        )
    console.print(table)


def render_summary(result: SaleReport) -> None:
    """The counted outcome, one fact per line (a label and its count, neither wrapped at 80 columns)."""
    s = result["summary"]
    mode = result.get("mode") or result.get("meta", {}).get("mode")
    table = Table(title=f"sale {result['sale_id']} ({escape(str(mode))})", box=box.SIMPLE_HEAD)
    table.add_column("what", no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    facts: list[tuple[str, object]] = [
        ("stock", s["stock"]),
        ("buyers", s["buyers"]),
        ("sold (ledger rows)", s["sold"]),
        ("oversold", s["oversold"]),
        ("seats sold twice", s["seats_sold_twice"]),
    ]
    twice = list(s["seats_sold_twice_detail"].items())
    facts += [(f"  seat {seat} sold", f"{n} times") for seat, n in twice[:8]]
    if len(twice) > 8:
        facts.append(("  more seats sold twice", len(twice) - 8))
    facts += [
        ("final counter", s["final_counter"]),
        ("lost updates (sold - counter drop)", s["lost_updates"]),
        ("failed buyers", s["failed_buyers"]),
        ("missing buyers (no outcome)", s["missing_buyers"]),
    ]
    for node, n in s["sold_per_node"].items():
        facts.append((f"sold by node {escape(node)}", n))
    throughput = result.get("throughput", {})
    rates = {"purchases/s": "purchases_per_s", "attempts/s": "attempts_per_s", "seconds": "elapsed_s"}
    for label, key in rates.items():
        value = throughput.get(key)
        if isinstance(value, float | int):
            facts.append((label, f"{value:,.1f}"))
    for what, value in facts:
        table.add_row(what, str(value))
    console.print(table)
    verdict = "[green]correct[/green]" if s["correct"] else "[red]WRONG: oversold or lost updates[/red]"
    console.print(f"{s['sold']} sold of {s['stock']} for {s['buyers']} buyers: {verdict}", soft_wrap=True)

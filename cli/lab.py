"""`mplab lab`: the chapter's sections as experiments that show the phenomenon and judge the claims."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import workers.lab as lab
from cli.base import console, err_console, new_app, print_json, settings_of
from workers.errors import ConfigError, NotFound
from workers.lab.verdicts import VERDICTS, Summary, summarize

app = new_app(
    "The chapter's sections as runnable experiments: each shows the phenomenon on this machine "
    "(pids, states, timings) and gives a verdict on the chapter's claims: holds, wrong, outdated."
)

VERDICT_STYLE = {
    "holds": "green", "wrong": "red", "outdated": "yellow", "too-close": "cyan", "not-measured": "dim",
}  # fmt: skip


def parse_params(items: list[str] | None) -> dict[str, str]:
    """['key=value', ...] -> {key: value}; ConfigError (exit 2) for anything else."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


@app.command("list")
def list_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Experiments with their chapter section, description and parameters."""
    exps = lab.all_experiments()
    if json_out:
        print_json([
            {"name": e.name, "section": e.section, "description": e.description, "params": e.params,
             "limits": e.limits, "param_help": e.param_help, "runs_in_node": e.runs_in_node}
            for e in exps
        ])  # fmt: skip
        return
    table = Table(title="mplab lab experiments", title_justify="left")
    for col in ("name", "§", "what it shows", "params: default (range)"):
        table.add_column(col, overflow="fold")
    for e in exps:
        params = "\n".join(e.describe_param(k).split(":")[0] for k in e.params)
        table.add_row(e.name, e.section, escape(e.description), escape(params))
    console.print(table)
    console.print(
        "Run one with `mplab lab run NAME [-p key=value]`, or all with `mplab lab run all`; "
        "`mplab lab show NAME` prints an experiment's code and what it teaches.",
        highlight=False,
    )


@app.command("show")
def show_cmd(
    name: Annotated[str, typer.Argument(help="Experiment name (see `mplab lab list`).")],
) -> None:
    """An experiment's explanation (why it behaves as it does), its parameters and its code."""
    from rich.syntax import Syntax

    from workers.lab.explain import show

    exp = lab.get(_known(name))
    shown = show(exp.name)
    console.rule(f"[bold]{escape(exp.name)}[/bold]  §{escape(exp.section)}")
    console.print(escape(exp.description), style="bold", highlight=False)
    console.print(escape(shown.explanation), highlight=False)
    if exp.params:
        console.print("[bold]Parameters[/bold] (-p key=value)")
        for key in exp.params:
            console.print(f"  {escape(exp.describe_param(key))}", highlight=False)
    for title, code in shown.code:
        console.print(f"[bold]{escape(title)}[/bold]")
        console.print(Syntax(code, "python", line_numbers=False, word_wrap=True))


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Experiment name (see `mplab lab list`), or `all`.")],
    via: Annotated[str, typer.Option(help="local: in this process; rq: on a worker node through RQ.")] = "local",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="key=value, repeatable (e.g. -p repeats=5). See `lab list`."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Run an experiment (or `all`): what happened, and the verdict on each claim it tests."""
    settings = settings_of(ctx)
    params = parse_params(param)
    if via not in ("local", "rq"):
        raise ConfigError(f"--via must be local or rq, got {via!r}")
    names = [e.name for e in lab.all_experiments()] if name == "all" else [_known(name)]
    with contextlib.ExitStack() as stack:
        runner = None
        if via == "rq":
            from workers.lab.remote import check_runs_in_node, remote_runner

            if name != "all":
                check_runs_in_node(name)
            lab.check_params(names, params)  # usage errors before any Redis is touched
            runner = stack.enter_context(remote_runner(settings))
        if name != "all":
            result = runner(name, params) if runner else lab.run(name, params, settings)
            print_json(result) if json_out else render(result)
            return
        started = time.perf_counter()
        with Progress(
            TextColumn("[bold]{task.description:<16}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=err_console, transient=True, disable=json_out,
        ) as progress:  # fmt: skip
            task = progress.add_task("starting", total=len(names))

            def step(exp_name: str, i: int) -> None:
                progress.update(task, description=exp_name, completed=i)

            results = lab.run_many(names, params, settings, progress=step, runner=runner)
            progress.update(task, completed=len(names))
    total = time.perf_counter() - started
    if json_out:
        print_json({"total_s": round(total, 3), "summary": summarize(results), "results": results})
    else:
        render_all(results, total)
    if any("error" in r for r in results):
        raise typer.Exit(1)


def _known(name: str) -> str:
    """`name` if it is an experiment; otherwise a usage error (exit 2) listing the experiments."""
    try:
        return lab.get(name).name
    except NotFound as exc:
        raise ConfigError(str(exc)) from None


def _facts_line(facts: dict[str, Any]) -> str:
    return (
        f"Python {facts['python']} · start method {facts['start_method']} · {facts['cores']} cores "
        f"({facts['usable_cores']} usable) · {facts['platform']}"
    )


def render(result: dict[str, Any]) -> None:
    """One experiment: header, narrative, measurements, claims (experiment text is never read as markup)."""
    console.rule(f"[bold]{escape(result['name'])}[/bold]  §{escape(result['section'])}")
    if "error" in result:
        console.print(f"[red]error:[/red] {escape(result['error'])}", highlight=False, soft_wrap=True)
        return
    if "facts" in result:
        where = result.get("ran_on")
        node = f" · node {where['node']} pid {where['pid']}" if where else ""
        console.print(escape(_facts_line(result["facts"]) + node), style="dim", highlight=False)
    console.print("[bold]What happened[/bold]")
    for line in result.get("events", []):
        stamp, _, text = line.strip().partition(" ms  ")
        console.print(f"  [dim]{escape(stamp):>8} ms[/dim]  {escape(text)}", highlight=False, soft_wrap=True)
    measurements = result.get("measurements", {})
    if measurements:
        console.print("[bold]Measured[/bold]")
        for key, value in measurements.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                console.print(_dict_table(key, value))
            else:
                text = json.dumps(value, ensure_ascii=False, default=str)
                text = text if len(text) < 400 else text[:397] + "..."
                console.print(f"  {escape(key)}: {escape(text)}", highlight=False)
    console.print(claims_table(result.get("claims", []), f"Claims ({result['elapsed_s']} s)"))
    from workers.lab.explain import EXPLAIN

    if result["name"] in EXPLAIN:
        console.print(f"[bold]Why[/bold]  {escape(EXPLAIN[result['name']])}", highlight=False)
        console.print(f"Code: `mplab lab show {escape(result['name'])}`", style="dim", highlight=False)


def _dict_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=escape(title), title_justify="left")
    keys = list(dict.fromkeys(k for row in rows for k in row))
    for key in keys:
        table.add_column(escape(key), overflow="fold")
    for row in rows:
        table.add_row(*("-" if row.get(k) is None else escape(str(row.get(k))) for k in keys))
    return table


def claims_table(claims: list[dict[str, str]], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("claim", ratio=3, overflow="fold")
    table.add_column("§", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("evidence", ratio=5, overflow="fold")
    for c in claims:
        style = VERDICT_STYLE.get(c["verdict"], "")
        claim = escape(c["claim"])
        if c.get("scope") == "edge":
            claim = f"[italic]edge case:[/italic] {claim}"
        table.add_row(claim, c["section"], f"[{style}]{c['verdict']}[/{style}]", escape(c["evidence"]))
    return table


def summary_table(summary: Summary) -> Table:
    """Counts per verdict, for the whole run and per chapter section."""
    table = Table(title="Verdicts per chapter section", title_justify="left")
    table.add_column("§")
    for verdict in VERDICTS:
        table.add_column(verdict, justify="right", style=VERDICT_STYLE[verdict])
    for section, counts in summary["sections"].items():
        table.add_row(section, *(str(counts.get(v, 0)) for v in VERDICTS))
    table.add_row("all", *(f"[bold]{summary['verdicts'].get(v, 0)}[/bold]" for v in VERDICTS))
    return table


def render_all(results: list[dict[str, Any]], total: float) -> None:
    """`lab run all`: one line per experiment, the verdict counts, then every claim in one table."""
    facts = next((r["facts"] for r in results if "facts" in r), None)
    if facts:
        console.print(escape(_facts_line(facts)), style="dim", highlight=False)
    per_exp = Table(title="Experiments", title_justify="left")
    for col in ("experiment", "§", "seconds", *VERDICTS):
        per_exp.add_column(col)
    claims: list[dict[str, str]] = []
    for r in results:
        verdicts = [c["verdict"] for c in r.get("claims", [])]
        counts = [str(verdicts.count(v)) for v in VERDICTS]
        seconds = f"[red]error: {escape(r['error'])}[/red]" if "error" in r else str(r.get("elapsed_s"))
        per_exp.add_row(r["name"], r["section"], seconds, *counts)
        claims.extend(r.get("claims", []))
    console.print(per_exp)
    summary = summarize(results)
    console.print(summary_table(summary))
    failed = summary["errors"]
    line = f"{len(claims)} verdicts from {len(results) - len(failed)} of {len(results)} experiments in {total:.1f} s"
    console.print(line + (f"; [red]failed: {escape(', '.join(failed))}[/red]" if failed else ""), highlight=False)
    console.print(claims_table(claims, f"Claims: {len(claims)} verdicts in {total:.1f} s"))

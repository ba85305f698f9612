"""`mplab lab`: the chapter's sections as experiments that show the phenomenon and judge the claims."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import workers.lab as lab
from cli.base import console, err_console, new_app, open_redis, print_json, settings_of
from cli.lab_render import LANGS, Words, default_lang, render, render_all, translate
from workers.errors import ConfigError, LabError, NotFound
from workers.lab.records import ExperimentResult, Params, Runner
from workers.lab.verdicts import summarize
from workers.redis_server import redis_for
from workers.settings import Settings

app = new_app(
    "The chapter's sections as runnable experiments: each shows the phenomenon on this machine "
    "(pids, states, timings) and gives a verdict on the chapter's claims: holds, wrong, outdated, too close "
    "to call, or not measured here (with the reason)."
)

LangOption = Annotated[
    str | None,
    typer.Option("--lang", help="en or zh (default: zh when the locale, e.g. LANG=zh_CN.UTF-8, is Chinese)."),
]


F = TypeVar("F", bound=Callable[..., None])


def _markup_safe(fn: F) -> F:
    """Error messages quote what the user typed; cli.base prints them as rich markup, so escape them here
    (a value such as `[/bold]x` would otherwise crash the printing itself)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except LabError as exc:
            raise type(exc)(escape(str(exc))) from None

    return wrapper  # type: ignore[return-value]


def _lang(given: str | None) -> str:
    """The language asked for, or the locale's; ConfigError (exit 2) for anything but en/zh."""
    import os

    lang = given if given is not None else default_lang(dict(os.environ))
    if lang not in LANGS:
        raise ConfigError(f"--lang must be one of {', '.join(LANGS)}, got {lang!r}")
    return lang


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
@_markup_safe
def list_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
    lang_opt: LangOption = None,
) -> None:
    """Experiments with their chapter section, description and parameters."""
    words = Words(_lang(lang_opt))
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
        table.add_row(e.name, e.section, escape(words.description(e.name, e.description)), escape(params))
    console.print(table)
    console.print(
        "Run one with `mplab lab run NAME [-p key=value]`, or all with `mplab lab run all`; "
        "`mplab lab show NAME` prints an experiment's code and what it teaches.",
        highlight=False,
    )


@app.command("show")
@_markup_safe
def show_cmd(
    name: Annotated[str, typer.Argument(help="Experiment name (see `mplab lab list`).")],
    lang_opt: LangOption = None,
) -> None:
    """An experiment's explanation (why it behaves as it does), its parameters and its code."""
    from rich.syntax import Syntax

    from workers.lab.explain import show

    words = Words(_lang(lang_opt))
    exp = lab.get(_known(name))
    shown = show(exp.name)
    console.rule(f"[bold]{escape(exp.name)}[/bold]  §{escape(exp.section)}")
    console.print(escape(words.description(exp.name, exp.description)), style="bold", highlight=False)
    console.print(escape(words.why(exp.name) or shown.explanation), highlight=False)
    if exp.params:
        console.print(f"[bold]{words.ui('Parameters')}[/bold] (-p key=value)")
        for key in exp.params:
            console.print(f"  {escape(exp.describe_param(key))}", highlight=False)
    for title, code in shown.code:
        console.print(f"[bold]{escape(title)}[/bold]")
        console.print(Syntax(code, "python", line_numbers=False, word_wrap=True))


@app.command("run")
@_markup_safe
def run_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Experiment name (see `mplab lab list`), or `all`.")],
    via: Annotated[str, typer.Option(help="local: in this process; rq: on a worker node through RQ.")] = "local",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="key=value, repeatable (e.g. -p repeats=5). See `lab list`."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
    lang_opt: LangOption = None,
) -> None:
    """Run an experiment (or `all`): what happened, and the verdict on each claim it tests."""
    lang = _lang(lang_opt)
    settings = settings_of(ctx)
    params = parse_params(param)
    if via not in ("local", "rq"):
        raise ConfigError(f"--via must be local or rq, got {via!r}")
    names = [e.name for e in lab.all_experiments()] if name == "all" else [_known(name)]
    with contextlib.ExitStack() as stack:
        if via == "rq":
            from workers.lab.node_runner import check_runs_in_node, node_runner

            if name != "all":
                check_runs_in_node(name)
            lab.check_params(names, params)  # usage errors before any Redis is touched
            conn = stack.enter_context(open_redis(ctx))
            runner = node_runner(conn.client, conn.where, settings)
        else:
            runner = _local_runner(settings)
        if name != "all":
            result = runner(name, params)
            print_json(translate(result, lang)) if json_out else render(result, lang)
            return
        started = time.perf_counter()
        with Progress(
            TextColumn("[bold]{task.description:<16}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=err_console, transient=True, disable=json_out,
        ) as progress:  # fmt: skip
            task = progress.add_task("starting", total=len(names))

            def step(exp_name: str, i: int) -> None:
                progress.update(task, description=exp_name, completed=i)

            results = lab.run_many(names, params, runner, progress=step)
            progress.update(task, completed=len(names))
    total = time.perf_counter() - started
    if json_out:
        translated = [translate(r, lang) for r in results]
        print_json({"total_s": round(total, 3), "summary": summarize(results), "results": translated})
    else:
        render_all(results, total, lang)
    if any("error" in r for r in results):
        raise typer.Exit(1)


def _local_runner(settings: Settings) -> Runner:
    """Runs an experiment in this process. One that measures over Redis gets it resolved here, for its run
    only (an embedded server then lives no longer than that experiment: no extra process in the others)."""

    def run(name: str, params: Params) -> ExperimentResult:
        if not lab.wants_redis(name, params):
            return lab.run(name, params, settings)
        with _redis_or_why(settings) as (url, note):
            return lab.run(name, params, settings.with_(redis_url=url), redis_note=note)

    return run


@contextlib.contextmanager
def _redis_or_why(settings: Settings) -> Iterator[tuple[str | None, str]]:
    """(url, where it is) of the Redis to use, or (None, why there is none): the experiment still runs."""
    with contextlib.ExitStack() as stack:
        try:
            url, where = stack.enter_context(redis_for(settings.redis_url, settings.state_dir))
        except LabError as exc:
            yield None, str(exc)
            return
        yield url, where


def _known(name: str) -> str:
    """`name` if it is an experiment; otherwise a usage error (exit 2) listing the experiments."""
    try:
        return lab.get(name).name
    except NotFound as exc:
        raise ConfigError(str(exc)) from None

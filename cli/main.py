"""The `mplab` entry point: global options and the sub-apps, one per noun."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.exceptions import TyperException

from cli import compare, jobs, lab, node, redis_cmd, tickets
from cli.base import LabGroup, err_console
from workers.errors import ConfigError
from workers.settings import Settings, parse_queues

app = typer.Typer(
    name="mplab",
    cls=LabGroup,
    help=(
        "A multiprocessing lab: the chapter's experiments on this machine, and the same workloads "
        "through Redis/RQ worker nodes, measured side by side."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_options(
    ctx: typer.Context,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            envvar="REDIS_URL",
            show_envvar=True,
            help="Redis to use (redis://[:password@]host:port/db or unix:///path). Default: the "
            "`mplab redis up` server if one runs, else an embedded redis-server for this command only.",
        ),
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option(envvar="MPLAB_QUEUES", help="Queue names in priority order.", show_default="high,default,low"),
    ] = None,
    start_method: Annotated[
        str | None,
        typer.Option(
            envvar="MPLAB_START_METHOD",
            help="fork, forkserver or spawn.",
            show_default="the platform's default",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(envvar="MPLAB_STATE_DIR", help="Where `mplab redis up` records its server."),
    ] = None,
) -> None:
    """Build the one Settings object from options and environment; commands read it from the context."""
    changes: dict[str, Any] = {"redis_url": redis_url or None}
    if queues is not None:
        changes["queues"] = parse_queues(queues)
    if start_method is not None:
        changes["start_method"] = start_method
    if state_dir is not None:
        changes["state_dir"] = state_dir
    pool_env = os.environ.get("MPLAB_POOL")
    if pool_env:
        try:
            changes["pool_size"] = int(pool_env)
        except ValueError:
            raise ConfigError(f"MPLAB_POOL must be an integer, got {pool_env!r}") from None
    ctx.obj = Settings(**changes)


app.add_typer(redis_cmd.app, name="redis")
app.add_typer(jobs.submit_app, name="submit")
app.command("worker")(node.worker)
app.command("status")(jobs.status)
app.command("result")(jobs.result)
app.command("compare")(compare.compare)
app.add_typer(lab.app, name="lab")
app.add_typer(tickets.app, name="tickets")


_MAIN_PID = os.getpid()


def _sigterm_to_interrupt(signum: int, frame: Any) -> None:
    # SIGTERM unwinds like Ctrl-C, so every `finally` (embedded Redis, started nodes) runs.
    if os.getpid() != _MAIN_PID:  # a forked child inherited this handler: die as SIGTERM means
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise KeyboardInterrupt


def main() -> None:
    """Console script entry point: usage errors too are one line (click would draw a box)."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        code = app(standalone_mode=False)
    except TyperException as exc:  # bad option values, missing arguments, unknown commands
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = exc.format_message()
        if message:  # empty when a bare group printed its help (no_args_is_help)
            err_console.print(f"[red]error:[/red] {message}{hint}", highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("[yellow]aborted[/yellow]")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)

"""The `mplab` entry point: global options and the sub-apps, one per noun."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.exceptions import TyperException

from cli import compare, jobctl, lab, node, redis_cmd, status, submit, tickets
from cli.base import EXIT_CODES, LabGroup, err_console
from workers.settings import Settings, StartMethod


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"mplab {version('mplab')}")
        raise typer.Exit()


app = typer.Typer(
    name="mplab",
    cls=LabGroup,
    help=(
        "A multiprocessing lab: the chapter's experiments on this machine, and the same workloads "
        "through Redis/RQ worker nodes, measured side by side."
    ),
    epilog=EXIT_CODES + " Shell completion: `mplab --install-completion` (bash, zsh, fish).",
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
        StartMethod | None,
        typer.Option(
            envvar="MPLAB_START_METHOD",
            help="How multiprocessing starts processes.",
            show_default="the platform's default",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(envvar="MPLAB_STATE_DIR", help="Where `mplab redis up` records its server."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Build the one Settings object from options and environment; commands read it from the context."""
    ctx.obj = Settings.from_options(
        os.environ,
        redis_url=redis_url,
        queues=queues,
        start_method=start_method.value if start_method else None,
        state_dir=state_dir,
    )


app.add_typer(redis_cmd.app, name="redis")
app.add_typer(submit.app, name="submit")
app.command("worker")(node.worker)
app.command("status")(status.status)
app.command("jobs")(jobctl.jobs)
app.command("result")(jobctl.result)
app.command("cancel")(jobctl.cancel)
app.command("requeue")(jobctl.requeue)
app.command("purge")(jobctl.purge)
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
            err_console.print(f"[red]error:[/red] {escape(message + hint)}", highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("[yellow]aborted[/yellow]")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)

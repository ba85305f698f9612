"""What every command module shares: the error boundary, the Settings accessor, consoles, JSON output."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup
from typer.exceptions import TyperException

from workers.errors import LabError
from workers.settings import Settings

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one red line and return the Exit to raise."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True, markup=True)
    return typer.Exit(code=code)


class LabGroup(TyperGroup):
    """The one place a LabError becomes one red line and a non-zero exit code (never a traceback)."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context
        try:
            return super().invoke(ctx)
        except LabError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(code=130) from None
        except (typer.Exit, typer.Abort, TyperException):  # usage errors and exits: typer renders them
            raise
        except Exception as exc:
            if os.environ.get("MPLAB_DEBUG"):
                raise
            message = f"internal error: {type(exc).__name__}: {exc} (MPLAB_DEBUG=1 shows the traceback)"
            raise fail(message, 3) from None


def new_app(help_text: str) -> typer.Typer:
    """A sub-app with mplab's error boundary and help conventions."""
    return typer.Typer(
        help=help_text,
        cls=LabGroup,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def settings_of(ctx: typer.Context) -> Settings:
    """The Settings built by the root callback."""
    obj = ctx.find_root().obj
    if not isinstance(obj, Settings):  # a sub-app invoked on its own (tests)
        obj = Settings()
        ctx.find_root().obj = obj
    return obj


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()

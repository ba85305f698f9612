"""What every command module shares: the error boundary, the Settings accessor, consoles, JSON output."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup
from typer.exceptions import TyperException

from workers.errors import LabError, map_errors
from workers.redis_server import Conn as Conn  # re-exported: the commands type their connection with it
from workers.redis_server import connect, redis_for
from workers.settings import Settings

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one red line and return the Exit to raise."""
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=code)


class LabGroup(TyperGroup):
    """The one place a LabError becomes one red line and a non-zero exit code (never a traceback)."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context
        try:
            with map_errors():  # redis-py and registry exceptions become leaves of the error tree here
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


def print_json(data: Any, *, one_line: bool = False) -> None:
    """Machine-readable output on stdout, nothing else (dataclass records become objects, typed)."""
    if is_dataclass(data) and not isinstance(data, type):
        data = asdict(data)
    elif isinstance(data, list):
        data = [asdict(x) if is_dataclass(x) and not isinstance(x, type) else x for x in data]
    text = json.dumps(data, indent=None if one_line else 2, sort_keys=True, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON only (typed: numbers as numbers).")]

EXIT_CODES = "Exit codes: 0 success, 1 failure or not found, 2 usage error (bad option or value), 130 interrupted."


def finite(value: float | None) -> float | None:
    """Option callback: NaN and infinities are usage errors (click's ranges let NaN through)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


@contextlib.contextmanager
def open_redis(ctx: typer.Context, needs: str | None = None) -> Iterator[Conn]:
    """Resolve Redis once for a command: --redis-url, the `redis up` server, or (unless `needs` says what
    requires a shared one) an embedded server for this command only; closed and stopped afterwards."""
    settings = settings_of(ctx)
    with redis_for(settings.redis_url, settings.state_dir, shared_for=needs) as (url, where):
        client = connect(url)
        try:
            yield Conn(client, url, where)
        finally:
            client.close()

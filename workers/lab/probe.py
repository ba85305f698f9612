"""Import-light child targets: timing a start method must not include importing the lab itself."""

from __future__ import annotations


def noop() -> None:
    """Do nothing: start+join of this is pure process-creation cost."""


def heavy_modules(conn: object) -> None:
    """Send back which of the CLI's heavy packages this process has imported (it should be none)."""
    import sys

    heavy = ("typer", "rich", "rq", "redis", "_pytest", "cli")
    conn.send(sorted(name for name in heavy if name in sys.modules))  # type: ignore[attr-defined]


def sleep_forever() -> None:
    """Sleep until terminated."""
    import time

    while True:
        time.sleep(0.1)

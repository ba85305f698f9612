"""Import-light child targets: timing a start method must not include importing the lab itself."""

from __future__ import annotations


def noop() -> None:
    """Do nothing: start+join of this is pure process-creation cost."""

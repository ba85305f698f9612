"""File store: the chapter's `ticket.json` and a JSONL ledger next to it.

Writes go through a temporary file and `os.replace`, so a reader sees either the old or the new
ticket.json, never a truncated one: the lesson is the lost update, not a torn read. Ledger rows are
appended with one `write` on an O_APPEND descriptor, which never interleaves two rows.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from tasks.tickets import Outcome, Ticket


@dataclass(frozen=True)
class FileStore:
    """One sale's ticket.json and its ledger (JSONL, one row per sale or refused buyer)."""

    path: Path
    ledger: Path

    @classmethod
    def at(cls, path: Path) -> FileStore:
        return cls(path, path.with_name(path.name + ".ledger.jsonl"))

    def create(self, stock: int) -> None:
        """Write {"count": stock} and start an empty ledger (the chapter's prepare_ticket_file).

        The directory must exist: a mistyped `--file` is an error, never a tree of new directories.
        """
        self.write({"count": stock})
        self.ledger.write_text("")

    def read(self) -> Ticket:
        """ticket.json; ValueError unless it holds `{"count": <int>}` (another program may have replaced it)."""
        with open(self.path) as fh:
            data = json.load(fh)
        count = data.get("count") if isinstance(data, dict) else None
        if not isinstance(count, int) or isinstance(count, bool):
            raise ValueError(f'{self.path} holds no {{"count": <int>}} ticket file')
        return {**data, "count": count}

    def write(self, data: Ticket) -> None:
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    def append(self, row: Outcome) -> None:
        line = (json.dumps(row, sort_keys=True) + "\n").encode()
        fd = os.open(self.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def rows(self) -> tuple[list[Outcome], list[Outcome]]:
        """(sales, failures) from the ledger."""
        sales: list[Outcome] = []
        failures: list[Outcome] = []
        for line in self.ledger.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                (sales if "seat" in row else failures).append(row)
        return sales, failures

    def count(self) -> int | None:
        """Tickets left, or None when ticket.json is gone or not a ticket file."""
        try:
            return self.read()["count"]
        except (OSError, ValueError):
            return None

"""File store: the chapter's `ticket.json`, a JSONL ledger next to it, and buyers as processes on this host.

How the race is made reproducible (the chapter staggers 7 starts by 50 ms and hopes): every buyer first
waits on one `multiprocessing.Barrier(buyers)`, so all of them read the file within a millisecond or two
of each other; then, in `unsafe` mode, each sleeps the race window (default 0.1 s, the chapter's
"processing time") between its read and its write. A buyer writes what it read minus one, so for one
of 7 buyers to find the 5 tickets gone, 5 read-window-write steps would have to run one after another
before its read: half a second after the barrier. So all 7 sell, 2 oversold, and (pigeonhole: 7 sales,
at most 5 seats) some seat is sold twice. Usually all 7 read `count == 5`, all take seat 1 and all write
`count == 4`; a buyer the scheduler delays past the window reads a later count. In `lock` mode the same
buyers take a `multiprocessing.Lock` around re-read + window + write, so exactly `min(buyers, stock)`
tickets are sold.

Writes go through a temporary file and `os.replace`, so a reader sees either the old or the new
ticket.json, never a truncated one: the lesson is the lost update, not a torn read. Ledger rows are
appended with one `write` on an O_APPEND descriptor, which never interleaves two rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from tasks import tickets
from workers import nodectx
from workers.errors import LabError

BARRIER_TIMEOUT = 60.0
"""Seconds a buyer waits at the start barrier for the others before giving up."""

JOIN_TIMEOUT = 120.0
"""Seconds the sale waits for all buyer processes to finish."""


@dataclass(frozen=True)
class FileStore:
    """One sale's ticket.json and its ledger (JSONL, one row per sale or refused buyer)."""

    path: Path
    ledger: Path

    @classmethod
    def at(cls, path: Path) -> FileStore:
        return cls(path, path.with_name(path.name + ".ledger.jsonl"))

    def create(self, stock: int) -> None:
        """Write {"count": stock} and start an empty ledger (the chapter's prepare_ticket_file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.write({"count": stock})
        self.ledger.write_text("")

    def read(self) -> dict[str, Any]:
        with open(self.path) as fh:
            data: dict[str, Any] = json.load(fh)
        return data

    def write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    def append(self, row: dict[str, Any]) -> None:
        line = (json.dumps(row, sort_keys=True) + "\n").encode()
        fd = os.open(self.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(sales, failures) from the ledger."""
        sales: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for line in self.ledger.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                (sales if "seat" in row else failures).append(row)
        return sales, failures

    def count(self) -> int | None:
        try:
            return int(self.read()["count"])
        except (OSError, ValueError, KeyError):
            return None


def buyer(path: str, sale_id: str, stock: int, name: str, mode: str, window: float, barrier: Any, lock: Any) -> None:
    """One buyer process: wait at the barrier, then the chapter's buy_ticket_unsafe / buy_ticket_safe.

    Ctrl-C is the parent's to handle (it reaps every buyer), so a buyer ignores SIGINT. A buyer whose
    attempt raises (a broken start barrier, an unreadable ticket.json) records a failure row naming the
    exception, unless its outcome is already in the ledger, and exits with code 1 without a traceback.
    """
    nodectx.child_signals()
    store = FileStore.at(Path(path))
    row = tickets.ledger_row(sale_id, name, mode, node="local", host=socket.gethostname(), pid=os.getpid(), now=0.0)
    progress: dict[str, bool] = {}
    try:
        barrier.wait(BARRIER_TIMEOUT)
        saw = int(store.read()["count"])  # the chapter's "query remaining tickets", outside any lock
        if mode == "unsafe":
            _read_modify_write(store, stock, row, window, saw, progress)
        else:
            with lock:
                _read_modify_write(store, stock, row, window, saw, progress)
    except Exception as exc:
        if not progress.get("recorded"):
            failed = {**row, "time": time.time(), "reason": type(exc).__name__, "error": str(exc)[:200]}
            if progress.get("wrote"):
                failed["counter_written"] = True  # ticket.json was decremented, the sale row never written
            with contextlib.suppress(OSError):
                store.append(failed)
        exit_quietly(1)


def exit_quietly(code: int) -> None:
    """End a buyer process now, with `code`, after flushing its output (no traceback, no atexit)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _read_modify_write(
    store: FileStore, stock: int, row: dict[str, Any], window: float, saw: int, progress: dict[str, bool]
) -> None:
    data = store.read()  # in lock mode: re-read inside the lock, the value may have changed since `saw`
    new = tickets.decide(data)
    if new is None:
        store.append({**row, "time": time.time(), "saw": saw, "reason": "sold out"})
        progress["recorded"] = True
        return
    time.sleep(window)  # the race window: every other unsafe buyer reads the same count meanwhile
    store.write(new)
    progress["wrote"] = True
    seat = tickets.seat_for(stock, int(data["count"]))
    store.append({**row, "time": time.time(), "saw": saw, "read": int(data["count"]), "seat": seat})
    progress["recorded"] = True


@contextlib.contextmanager
def reaped(procs: list[Any]) -> Iterator[None]:
    """Whatever happens, no buyer process outlives the sale."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            with contextlib.suppress(ValueError, AssertionError):
                proc.join()


def run_all(procs: list[Any]) -> None:
    """Start every buyer, give them JOIN_TIMEOUT together, and leave none behind.

    SIGINT/SIGTERM stay blocked while the buyers start, so a Ctrl-C reaches none of them before it has
    set its own handlers (`nodectx.child_signals`): it interrupts this process, which reaps them all.
    """
    with reaped(procs):
        with nodectx.signals_blocked():
            for proc in procs:
                try:
                    proc.start()
                except OSError as exc:
                    raise LabError(f"cannot start buyer process {proc.name}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + JOIN_TIMEOUT
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))


def run_sale(
    ctx: BaseContext, sale_id: str, store: FileStore, *, stock: int, buyers: int, mode: str, window: float
) -> dict[str, Any]:
    """Run one file sale with `buyers` processes on a created store (`FileStore.create`); returns the counted
    outcome and per-buyer rows."""
    tickets.check_mode(mode, tickets.FILE_MODES)
    names = tickets.buyer_names(buyers)
    barrier = ctx.Barrier(buyers)
    lock = ctx.Lock()
    procs = [
        ctx.Process(  # type: ignore[attr-defined]
            target=buyer,
            args=(str(store.path), sale_id, stock, name, mode, window, barrier, lock),
            name=f"buyer-{name}",
        )
        for name in names
    ]
    started = time.perf_counter()
    run_all(procs)
    elapsed = time.perf_counter() - started
    crashed = [(p.name, p.exitcode) for p in procs if p.exitcode not in (0, None)]
    sales, failures = store.rows()
    summary = tickets.summarize(sales, failures, stock=stock, buyers=buyers, final_counter=store.count())
    if crashed and not sales and not failures:
        raise LabError(f"all buyer processes failed (e.g. {crashed[0][0]} exit code {crashed[0][1]})")
    order = {name: i for i, name in enumerate(names)}
    outcomes = sorted(sales + failures, key=lambda r: order.get(str(r["buyer"]), len(order)))
    return {
        "sale_id": sale_id,
        "store": "file",
        "path": str(store.path),
        "ledger": str(store.ledger),
        "mode": mode,
        "window_s": window,
        "elapsed_s": elapsed,
        "crashed_buyers": [name for name, _code in crashed],
        "summary": summary,
        "outcomes": outcomes,
    }

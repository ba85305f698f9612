"""Local sales: the buyers are processes on this host, on the file store (unsafe/lock) or the Redis store.

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

File sales keep their ticket.json and ledger under `{state_dir}/sales/{id}/` (or the `--file` given), so
`report`, `reset` and `delete` (`manage`) find them again; Redis sales live in Redis (`store_redis`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import time
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier, Lock
from pathlib import Path

import redis

from tasks import tickets
from tasks.tickets import Outcome
from workers import proclife
from workers.errors import ConfigError, ExperimentFailed
from workers.redis_server import Conn
from workers.settings import Settings, machine_facts
from workers.tickets import network, redis_buyer, store_redis
from workers.tickets.manage import sale_dir
from workers.tickets.records import LOCAL_MAX_BUYERS, SaleMeta, SaleReport, SaleSpec, new_sale_id
from workers.tickets.store_file import FileStore

BARRIER_TIMEOUT = 60.0
"""Seconds a buyer waits at the start barrier for the others before giving up."""

JOIN_TIMEOUT = 120.0
"""Seconds the sale waits for all buyer processes to finish."""

FDS_PER_BUYER = 2
"""Descriptors the parent holds per started buyer process until it is joined (multiprocessing's pipes)."""

FDS_RESERVED = 64
"""Descriptors left for everything else the parent has open (Redis clients, files, the terminal)."""


def check(spec: SaleSpec) -> SaleSpec:
    """`spec` if a local sale can run with it on this host, else ConfigError: before any Redis is sought."""
    spec.check(tickets.FILE_MODES + tickets.REDIS_MODES, max_buyers=LOCAL_MAX_BUYERS)
    check_open_files(spec.buyers)
    return spec


def run(settings: Settings, spec: SaleSpec, *, path: Path | None = None, conn: Conn | None = None) -> SaleReport:
    """A sale whose buyers are processes on this host: file store (unsafe/lock, in `path` or the state dir)
    or Redis store (the other modes, in `conn`: the caller's Redis, whose URL the buyer processes connect to)."""
    check(spec)
    sale_id = new_sale_id()
    ctx = settings.mp_context()
    if spec.mode in tickets.FILE_MODES:
        store = _new_file_sale(settings, sale_id, path, spec)
        result = run_file_sale(ctx, sale_id, store, spec)
        result["redis"] = None
    elif conn is None:
        raise ConfigError(f"a {spec.mode} sale needs a Redis to run in")
    else:
        result = run_redis_sale(ctx, conn.url, conn.client, sale_id, spec)
        result["redis"] = conn.where
    result["machine"] = machine_facts(settings.start_method)
    return result


def _open_file_limit() -> int | None:
    """This process's soft RLIMIT_NOFILE, or None when unlimited or unknown."""
    try:
        import resource
    except ImportError:  # not a POSIX platform
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def check_open_files(buyers: int) -> None:
    """ConfigError for more local buyers than this process may hold open files for."""
    files = _open_file_limit()
    if files is not None and buyers * FDS_PER_BUYER + FDS_RESERVED > files:
        most = max(1, (files - FDS_RESERVED) // FDS_PER_BUYER)
        raise ConfigError(
            f"{buyers} local buyers need more open files than this process may have ({files}, `ulimit -n`): "
            f"at most {most} buyers here"
        )


# -- the file store ------------------------------------------------------------------------------------


def _new_file_sale(settings: Settings, sale_id: str, path: Path | None, spec: SaleSpec) -> FileStore:
    """Create a file sale's ticket.json, ledger and meta.json; on failure leave nothing of it behind.

    The ticket path is stored absolute: `report`, `reset` and `delete` may run from another directory.
    A `--file` whose directory does not exist is refused: no directory is created for it.
    """
    home = sale_dir(settings, sale_id)
    try:
        store = FileStore.at((path if path is not None else home / "ticket.json").expanduser().resolve())
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop; ValueError: no file name
        raise ConfigError(f"cannot use {path} as the ticket file: {exc}") from None
    if path is not None:
        if not store.path.parent.is_dir():
            raise ConfigError(f"cannot use {path} as the ticket file: {store.path.parent} is not a directory")
        if store.path.exists() or store.ledger.exists():
            raise ConfigError(f"{store.path} (or its ledger) already exists; not overwriting it: pick a new --file")
    meta: SaleMeta = {"stock": spec.stock, "buyers": spec.buyers, "mode": spec.mode, "window": spec.window}
    try:
        home.mkdir(parents=True, exist_ok=True)
        store.create(spec.stock)
        (home / "meta.json").write_text(json.dumps({**meta, "path": str(store.path), "created": time.time()}))
    except OSError as exc:
        # neither file existed before (checked above, or `home` is a fresh sale id): removing them loses nothing
        with contextlib.suppress(OSError):
            store.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            store.ledger.unlink(missing_ok=True)
        shutil.rmtree(home, ignore_errors=True)
        raise ConfigError(f"cannot create the ticket sale's files ({store.path}): {exc.strerror or exc}") from None
    return store


def run_file_sale(ctx: BaseContext, sale_id: str, store: FileStore, spec: SaleSpec) -> SaleReport:
    """Run one file sale with `spec.buyers` processes on a created store (`FileStore.create`); returns the
    counted outcome and per-buyer rows."""
    tickets.check_mode(spec.mode, tickets.FILE_MODES)
    names = tickets.buyer_names(spec.buyers)
    barrier = ctx.Barrier(spec.buyers)
    lock = ctx.Lock()
    procs = [
        ctx.Process(  # type: ignore[attr-defined]
            target=file_buyer, args=(str(store.path), sale_id, spec, name, barrier, lock), name=f"buyer-{name}"
        )
        for name in names
    ]
    started = time.perf_counter()
    run_all(procs)
    elapsed = time.perf_counter() - started
    crashed = [(p.name, p.exitcode) for p in procs if p.exitcode not in (0, None)]
    sales, failures = store.rows()
    summary = tickets.summarize(sales, failures, stock=spec.stock, buyers=spec.buyers, final_counter=store.count())
    if crashed and not sales and not failures:
        raise ExperimentFailed(f"all buyer processes failed (e.g. {crashed[0][0]} exit code {crashed[0][1]})")
    order = {name: i for i, name in enumerate(names)}
    outcomes = sorted(sales + failures, key=lambda r: order.get(str(r["buyer"]), len(order)))
    return {
        "sale_id": sale_id,
        "store": "file",
        "path": str(store.path),
        "ledger": str(store.ledger),
        "mode": spec.mode,
        "window_s": spec.window,
        "elapsed_s": elapsed,
        "crashed_buyers": [name for name, _code in crashed],
        "summary": summary,
        "outcomes": outcomes,
    }


def file_buyer(path: str, sale_id: str, spec: SaleSpec, name: str, barrier: Barrier, lock: Lock) -> None:
    """One buyer process: wait at the barrier, then the chapter's buy_ticket_unsafe / buy_ticket_safe.

    Ctrl-C is the parent's to handle (it reaps every buyer), so a buyer ignores SIGINT. A buyer whose
    attempt raises (a broken start barrier, an unreadable ticket.json) records a failure row naming the
    exception, unless its outcome is already in the ledger, and exits with code 1 without a traceback.
    """
    proclife.child_signals()
    store = FileStore.at(Path(path))
    row = tickets.ledger_row(
        sale_id, name, spec.mode, node="local", host=socket.gethostname(), pid=os.getpid(), now=0.0
    )
    progress: dict[str, bool] = {}
    try:
        barrier.wait(BARRIER_TIMEOUT)
        saw = store.read()["count"]  # the chapter's "query remaining tickets", outside any lock
        if spec.mode == "unsafe":
            _read_modify_write(store, spec, row, saw, progress)
        else:
            with lock:
                _read_modify_write(store, spec, row, saw, progress)
    except Exception as exc:
        if not progress.get("recorded"):
            failed: Outcome = {**row, "time": time.time(), "reason": type(exc).__name__, "error": str(exc)[:200]}
            if progress.get("wrote"):
                failed["counter_written"] = True  # ticket.json was decremented, the sale row never written
            with contextlib.suppress(OSError):
                store.append(failed)
        exit_quietly(1)


def _read_modify_write(store: FileStore, spec: SaleSpec, row: Outcome, saw: int, progress: dict[str, bool]) -> None:
    data = store.read()  # in lock mode: re-read inside the lock, the value may have changed since `saw`
    new = tickets.decide(data)
    if new is None:
        store.append({**row, "time": time.time(), "saw": saw, "reason": "sold out"})
        progress["recorded"] = True
        return
    time.sleep(spec.window)  # the race window: every other unsafe buyer reads the same count meanwhile
    store.write(new)
    progress["wrote"] = True
    seat = tickets.seat_for(spec.stock, data["count"])
    store.append({**row, "time": time.time(), "saw": saw, "read": data["count"], "seat": seat})
    progress["recorded"] = True


# -- the Redis store -----------------------------------------------------------------------------------


def run_redis_sale(ctx: BaseContext, url: str, r: redis.Redis, sale_id: str, spec: SaleSpec) -> SaleReport:
    """Redis store (`r`, at `url` for the buyers), buyer processes on this host released together by a
    multiprocessing.Barrier.

    Here `host-lock` is one Lock shared by all buyers, i.e. the single-node case: it sells exactly right.
    """
    params = store_redis.params_for(sale_id, spec, party=spec.buyers, barrier_timeout=BARRIER_TIMEOUT)
    store_redis.create_sale(r, params, buyers=spec.buyers, extra={"store": "redis", "where": "local"})
    return run_redis_buyers(ctx, url, r, sale_id, tickets.buyer_names(spec.buyers))


def run_redis_buyers(ctx: BaseContext, url: str, r: redis.Redis, sale_id: str, names: list[str]) -> SaleReport:
    """Run buyer processes (one per name) on an existing Redis sale; its report once all have finished."""
    barrier = ctx.Barrier(len(names))
    host_lock = ctx.Lock()
    procs = [
        ctx.Process(  # type: ignore[attr-defined]
            target=redis_buyer_process, args=(url, sale_id, name, barrier, host_lock), name=f"buyer-{name}"
        )
        for name in names
    ]
    started = time.time()
    store_redis.set_meta(r, sale_id, submitted=started)
    run_all(procs)
    result = network.report(r, sale_id)
    result["crashed_buyers"] = [p.name for p in procs if p.exitcode not in (0, None)]
    result["elapsed_s"] = time.time() - started
    return result


def redis_buyer_process(url: str, sale_id: str, name: str, barrier: Barrier, host_lock: Lock) -> None:
    """Process target: one buyer with its own client (a client never crosses a process boundary).

    Ctrl-C is the parent's to handle (it reaps every buyer), so a buyer ignores SIGINT. A buyer whose
    attempt raises (a broken start barrier, a Redis error) records a failure row naming the exception,
    unless its outcome is already in the sale's ledger, and exits with code 1 without a traceback.
    """
    proclife.child_signals()
    client = redis.Redis.from_url(url)
    try:
        redis_buyer.buy(client, sale_id, name, host_lock=host_lock, align=lambda: barrier.wait(BARRIER_TIMEOUT))
    except Exception as exc:
        with contextlib.suppress(Exception):  # Redis may be what failed: then the buyer just has no outcome
            redis_buyer.record_crash(client, sale_id, name, exc)
        exit_quietly(1)
    finally:
        client.close()


# -- buyer processes -----------------------------------------------------------------------------------


def exit_quietly(code: int) -> None:
    """End a buyer process now, with `code`, after flushing its output (no traceback, no atexit)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def run_all(procs: list[BaseProcess]) -> None:
    """Start every buyer, give them JOIN_TIMEOUT together, and leave none behind.

    SIGINT/SIGTERM stay blocked while the buyers start, so a Ctrl-C reaches none of them before it has
    set its own handlers (`proclife.child_signals`): it interrupts this process, which reaps them all.
    """
    with proclife.reaped(*procs, timeout=0):  # the sale is over: no buyer gets more time
        with proclife.signals_blocked():
            for proc in procs:
                try:
                    proc.start()
                except OSError as exc:
                    raise ExperimentFailed(f"cannot start buyer process {proc.name}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + JOIN_TIMEOUT
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))

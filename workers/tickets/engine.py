"""Run a ticket sale: locally (buyer processes on this host) or over worker nodes (buyer RQ jobs); report it.

Local sales on the file store keep their ticket.json and ledger under `{state_dir}/sales/{id}/` (or
the path given), so `report`, `reset` and `delete` find them again; Redis sales live in Redis under
`mplab:sale:{id}:` (see `store_redis`).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import time
from collections.abc import Callable
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import redis

from tasks import tickets
from workers import nodectx
from workers.errors import ConfigError
from workers.redis_server import connect, redis_for
from workers.settings import Settings, machine_facts
from workers.tickets import buying, network, store_redis
from workers.tickets.manage import sale_dir
from workers.tickets.store_file import BARRIER_TIMEOUT, FileStore, exit_quietly, run_all, run_sale

DEFAULT_LOCAL_WINDOW = 0.1
"""Seconds between a local buyer's read and its write (the chapter's processing time)."""

DEFAULT_LOCK_TIMEOUT = 1.0
"""Seconds a redis-lock holder may keep the lock before Redis expires it (a dead holder's lock frees)."""

LOCAL_MAX_BUYERS = 1000
"""Most buyer processes a local sale starts. Every buyer is a whole process (and costs the parent two
pipe descriptors until it is joined): beyond a few hundred the sale measures the OS's fork and
scheduler rather than the race, and a few thousand run into the process's open-file limit."""

FDS_PER_BUYER = 2
"""Descriptors the parent holds per started buyer process until it is joined (multiprocessing's pipes)."""

FDS_RESERVED = 64
"""Descriptors left for everything else the parent has open (Redis clients, files, the terminal)."""


def new_sale_id() -> str:
    """A fresh sale id, unique enough that concurrent sales never share keys or files."""
    return f"s{secrets.token_hex(5)}"


def check_numbers(
    *, stock: int, buyers: int, window: float, mode: str, per_job: int = 1, lock_timeout: float = 1.0
) -> None:
    """ConfigError (exit 2) for any number a sale in `mode` cannot run with."""
    if stock < 0:
        raise ConfigError(f"stock must be >= 0, got {stock}")
    if buyers < 1:
        raise ConfigError(f"buyers must be >= 1, got {buyers}")
    if per_job < 1:
        raise ConfigError(f"per-job must be >= 1, got {per_job}")
    if window < 0:
        raise ConfigError(f"window must be >= 0 seconds, got {window}")
    if mode == "redis-lock" and lock_timeout <= window:
        raise ConfigError(
            f"lock timeout ({lock_timeout} s) must exceed the race window ({window} s), or every "
            "redis-lock holder would lose its lock mid-purchase"
        )


def _open_file_limit() -> int | None:
    """This process's soft RLIMIT_NOFILE, or None when unlimited or unknown."""
    try:
        import resource
    except ImportError:  # not a POSIX platform
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def check_local_buyers(buyers: int) -> None:
    """ConfigError for more local buyers than this host should start as processes."""
    if buyers > LOCAL_MAX_BUYERS:
        raise ConfigError(
            f"local sales take at most {LOCAL_MAX_BUYERS} buyers, got {buyers} (each buyer is a process on "
            "this host; use `tickets submit` to spread more over worker nodes)"
        )
    files = _open_file_limit()
    if files is not None and buyers * FDS_PER_BUYER + FDS_RESERVED > files:
        most = max(1, (files - FDS_RESERVED) // FDS_PER_BUYER)
        raise ConfigError(
            f"{buyers} local buyers need more open files than this process may have ({files}, `ulimit -n`): "
            f"at most {most} buyers here"
        )


def check_mode(mode: str, allowed: tuple[str, ...]) -> str:
    try:
        return tickets.check_mode(mode, allowed)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


# -- local sales: buyers are processes on this host ---------------------------------------------------


def run_local(
    settings: Settings,
    *,
    stock: int,
    buyers: int,
    mode: str,
    window: float = DEFAULT_LOCAL_WINDOW,
    path: Path | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> dict[str, Any]:
    """A sale whose buyers are processes on this host: file store (unsafe/lock) or Redis store."""
    check_mode(mode, tickets.FILE_MODES + tickets.REDIS_MODES)
    check_numbers(stock=stock, buyers=buyers, window=window, mode=mode, lock_timeout=lock_timeout)
    check_local_buyers(buyers)
    sale_id = new_sale_id()
    ctx = settings.mp_context()
    if mode in tickets.FILE_MODES:
        store = _new_file_sale(settings, sale_id, path, stock=stock, buyers=buyers, mode=mode, window=window)
        result = run_sale(ctx, sale_id, store, stock=stock, buyers=buyers, mode=mode, window=window)
        result["redis"] = None
    else:
        with redis_for(settings.redis_url, settings.state_dir) as (url, description):
            result = run_local_redis(
                ctx,
                url,
                sale_id,
                stock=stock,
                buyers=buyers,
                mode=mode,
                window=window,
                lock_timeout=lock_timeout,
            )
            result["redis"] = description
    result["machine"] = machine_facts(settings.start_method)
    return result


def _new_file_sale(
    settings: Settings, sale_id: str, path: Path | None, *, stock: int, buyers: int, mode: str, window: float
) -> FileStore:
    """Create a file sale's ticket.json, ledger and meta.json; on failure leave nothing of it behind.

    The ticket path is stored absolute: `report`, `reset` and `delete` may run from another directory.
    """
    home = sale_dir(settings, sale_id)
    try:
        store = FileStore.at((path if path is not None else home / "ticket.json").expanduser().resolve())
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise ConfigError(f"cannot use {path} as the ticket file: {exc}") from None
    if path is not None and (store.path.exists() or store.ledger.exists()):
        raise ConfigError(f"{store.path} (or its ledger) already exists; not overwriting it: pick a new --file")
    meta = {"stock": stock, "buyers": buyers, "mode": mode, "window": window, "path": str(store.path)}
    try:
        home.mkdir(parents=True, exist_ok=True)
        store.create(stock)
        (home / "meta.json").write_text(json.dumps({**meta, "created": time.time()}))
    except OSError as exc:
        # neither file existed before (checked above, or `home` is a fresh sale id): removing them loses nothing
        with contextlib.suppress(OSError):
            store.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            store.ledger.unlink(missing_ok=True)
        shutil.rmtree(home, ignore_errors=True)
        raise ConfigError(f"cannot create the ticket sale's files ({store.path}): {exc.strerror or exc}") from None
    return store


def run_local_redis(
    ctx: BaseContext,
    url: str,
    sale_id: str,
    *,
    stock: int,
    buyers: int,
    mode: str,
    window: float,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> dict[str, Any]:
    """Redis store, buyer processes on this host released together by a multiprocessing.Barrier.

    Here `host-lock` is one Lock shared by all buyers, i.e. the single-node case: it sells exactly right.
    """
    with connect(url) as r:
        params = store_redis.SaleParams(sale_id, stock, mode, window, buyers, lock_timeout, BARRIER_TIMEOUT)
        store_redis.create_sale(r, params, buyers=buyers, extra={"store": "redis", "where": "local"})
        return run_buyers(ctx, url, r, sale_id, tickets.buyer_names(buyers))


def run_buyers(ctx: BaseContext, url: str, r: redis.Redis, sale_id: str, names: list[str]) -> dict[str, Any]:
    """Run buyer processes (one per name) on an existing Redis sale; its report once all have finished."""
    barrier = ctx.Barrier(len(names))
    host_lock = ctx.Lock()
    procs = [
        ctx.Process(  # type: ignore[attr-defined]
            target=local_redis_buyer, args=(url, sale_id, name, barrier, host_lock), name=f"buyer-{name}"
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


def local_redis_buyer(url: str, sale_id: str, name: str, barrier: Any, host_lock: Any) -> None:
    """Process target: one buyer with its own client (a client never crosses a process boundary).

    Ctrl-C is the parent's to handle (it reaps every buyer), so a buyer ignores SIGINT. A buyer whose
    attempt raises (a broken start barrier, a Redis error) records a failure row naming the exception,
    unless its outcome is already in the sale's ledger, and exits with code 1 without a traceback.
    """
    nodectx.child_signals()
    client = redis.Redis.from_url(url)
    try:
        buying.buy(client, sale_id, name, host_lock=host_lock, align=lambda: barrier.wait(BARRIER_TIMEOUT))
    except Exception as exc:
        with contextlib.suppress(Exception):  # Redis may be what failed: then the buyer just has no outcome
            buying.record_crash(client, sale_id, name, exc)
        exit_quietly(1)
    finally:
        client.close()


# -- networked sales: buyers are RQ jobs on worker nodes -------------------------------------------------


def submit(
    settings: Settings,
    *,
    stock: int,
    buyers: int,
    mode: str,
    per_job: int = 1,
    window: float = network.DEFAULT_WINDOW,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    party: int = 0,
    queue: str = "default",
    wait: bool = False,
    timeout: float = 300.0,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> dict[str, Any]:
    """Create a Redis sale and enqueue its buyers; with `wait`, follow it to the end and report it."""
    check_mode(mode, tickets.REDIS_MODES)
    check_numbers(stock=stock, buyers=buyers, window=window, mode=mode, per_job=per_job, lock_timeout=lock_timeout)
    if party < 0:
        raise ConfigError(f"party must be >= 0 (0 = automatic), got {party}")
    settings.check_queue(queue)
    shared_for = None if wait else "`tickets submit` without --wait (the buyer jobs must stay for the nodes)"
    with redis_for(settings.redis_url, settings.state_dir, shared_for=shared_for) as (url, description):
        with connect(url) as r:
            result = network.submit(
                r,
                new_sale_id(),
                stock=stock,
                buyers=buyers,
                mode=mode,
                per_job=per_job,
                window=window,
                lock_timeout=lock_timeout,
                party=party,
                queue=queue,
            )
            result["redis"] = description
            if wait:
                result.update(network.wait(r, result["sale_id"], timeout=timeout, on_progress=on_progress))
    result["machine"] = machine_facts(settings.start_method)
    return result

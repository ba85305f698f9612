"""Run a ticket sale: locally (buyer processes on this host) or over worker nodes (buyer RQ jobs); report it.

Local sales on the file store keep their ticket.json and ledger under `{state_dir}/sales/{id}/` (or
the path given), so `report`, `reset` and `delete` find them again; Redis sales live in Redis under
`mplab:sale:{id}:` (see `store_redis`).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import redis

from tasks import tickets
from workers.errors import ConfigError, NotFound
from workers.redis_server import connect, read_state, redis_for
from workers.settings import Settings, machine_facts
from workers.tickets import network, store_redis
from workers.tickets.store_file import BARRIER_TIMEOUT, FileStore, run_all, run_sale

DEFAULT_LOCAL_WINDOW = 0.1
"""Seconds between a local buyer's read and its write (the chapter's processing time)."""

DEFAULT_LOCK_TIMEOUT = 1.0
"""Seconds a redis-lock holder may keep the lock before Redis expires it (a dead holder's lock frees)."""

_SALE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def new_sale_id() -> str:
    """A fresh sale id, unique enough that concurrent sales never share keys or files."""
    return f"s{secrets.token_hex(5)}"


def check_numbers(*, stock: int, buyers: int, window: float, per_job: int = 1, lock_timeout: float = 1.0) -> None:
    """ConfigError (exit 2) for any number a sale cannot run with."""
    if stock < 0:
        raise ConfigError(f"stock must be >= 0, got {stock}")
    if buyers < 1:
        raise ConfigError(f"buyers must be >= 1, got {buyers}")
    if per_job < 1:
        raise ConfigError(f"per-job must be >= 1, got {per_job}")
    if window < 0:
        raise ConfigError(f"window must be >= 0 seconds, got {window}")
    if lock_timeout <= window:
        raise ConfigError(
            f"lock timeout ({lock_timeout} s) must exceed the race window ({window} s), or every "
            "redis-lock holder would lose its lock mid-purchase"
        )


def check_mode(mode: str, allowed: tuple[str, ...]) -> str:
    try:
        return tickets.check_mode(mode, allowed)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_sale_id(sale_id: str) -> str:
    if not _SALE_ID.match(sale_id):
        raise NotFound(f"no ticket sale {sale_id!r} (sale ids are letters, digits, '-' and '_')")
    return sale_id


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
    check_numbers(stock=stock, buyers=buyers, window=window, lock_timeout=lock_timeout)
    sale_id = new_sale_id()
    ctx = settings.mp_context()
    if mode in tickets.FILE_MODES:
        home = _sale_dir(settings, sale_id)
        store = FileStore.at(path or home / "ticket.json")
        if path is not None and (store.path.exists() or store.ledger.exists()):
            raise ConfigError(f"{store.path} (or its ledger) already exists; not overwriting it: pick a new --file")
        home.mkdir(parents=True, exist_ok=True)
        meta = {"stock": stock, "buyers": buyers, "mode": mode, "window": window, "path": str(store.path)}
        (home / "meta.json").write_text(json.dumps({**meta, "created": time.time()}))
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
    """Process target: one buyer with its own client (a client never crosses a process boundary)."""
    client = redis.Redis.from_url(url)
    try:
        store_redis.buy(client, sale_id, name, host_lock=host_lock, align=lambda: barrier.wait(BARRIER_TIMEOUT))
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
    check_numbers(stock=stock, buyers=buyers, window=window, per_job=per_job, lock_timeout=lock_timeout)
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


# -- report, reset, delete (either store) ------------------------------------------------------------


def _sale_dir(settings: Settings, sale_id: str) -> Path:
    return settings.state_dir / "sales" / sale_id


def _file_sale(settings: Settings, sale_id: str) -> tuple[dict[str, Any], FileStore] | None:
    meta_path = _sale_dir(settings, check_sale_id(sale_id)) / "meta.json"
    if not meta_path.is_file():
        return None
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    return meta, FileStore.at(Path(meta["path"]))


def report(settings: Settings, sale_id: str) -> dict[str, Any]:
    """Re-read a sale's ledger and count its outcome."""
    found = _file_sale(settings, sale_id)
    if found is not None:
        meta, store = found
        if not store.ledger.exists():
            raise NotFound(f"ticket sale {sale_id!r}: its ledger {store.ledger} is gone")
        sales, failures = store.rows()
        summary = tickets.summarize(
            sales, failures, stock=meta["stock"], buyers=meta["buyers"], final_counter=store.count()
        )
        result = {"sale_id": sale_id, "store": "file", "mode": meta["mode"], "meta": meta, "summary": summary}
        result["outcomes"] = sales + failures
    else:
        with _redis(settings, sale_id) as r:
            result = network.report(r, sale_id)
    result["machine"] = machine_facts(settings.start_method)
    return result


def reset(settings: Settings, sale_id: str) -> dict[str, Any]:
    """Put the stock back and empty the ledger; the sale id and parameters stay."""
    found = _file_sale(settings, sale_id)
    if found is not None:
        meta, store = found
        store.create(int(meta["stock"]))
        return {"sale_id": sale_id, "store": "file", "reset": True, "stock": meta["stock"]}
    with _redis(settings, sale_id) as r:
        meta = store_redis.reset_sale(r, sale_id)
        return {"sale_id": sale_id, "store": "redis", "reset": True, "stock": meta["stock"]}


def delete(settings: Settings, sale_id: str) -> dict[str, Any]:
    """Remove the sale: its files, or its Redis keys."""
    found = _file_sale(settings, sale_id)
    if found is not None:
        _meta, store = found
        store.path.unlink(missing_ok=True)
        store.ledger.unlink(missing_ok=True)
        shutil.rmtree(_sale_dir(settings, sale_id), ignore_errors=True)
        return {"sale_id": sale_id, "store": "file", "deleted": True}
    with _redis(settings, sale_id) as r:
        store_redis.delete_sale(r, sale_id)
        return {"sale_id": sale_id, "store": "redis", "deleted": True}


@contextlib.contextmanager
def _redis(settings: Settings, sale_id: str) -> Iterator[redis.Redis]:
    if not settings.redis_url and store_redis_unreachable(settings):
        raise NotFound(
            f"no ticket sale {sale_id!r} on this host, and no Redis (--redis-url / `mplab redis up`) to look in"
        )
    with redis_for(settings.redis_url, settings.state_dir) as (url, _description):
        client = connect(url)
        try:
            yield client
        finally:
            client.close()


def store_redis_unreachable(settings: Settings) -> bool:
    """True when only a fresh embedded Redis could be used: it cannot hold any earlier sale."""
    return read_state(settings.state_dir) is None

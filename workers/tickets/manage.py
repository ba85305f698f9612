"""Re-read, reset or delete a sale, whichever store it lives in (the file sales of this state dir, or Redis)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import redis

from tasks import tickets
from workers.errors import ConfigError, NotFound
from workers.redis_server import connect, read_state, redis_for
from workers.settings import Settings, machine_facts
from workers.tickets import network, store_redis
from workers.tickets.records import SaleChange, SaleMeta, SaleReport
from workers.tickets.store_file import FileStore

_SALE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_sale_id(sale_id: str) -> str:
    if not _SALE_ID.match(sale_id):
        raise NotFound(f"no ticket sale {sale_id!r} (sale ids are letters, digits, '-' and '_')")
    return sale_id


def sale_dir(settings: Settings, sale_id: str) -> Path:
    """Where a local file sale keeps its ticket.json, ledger and meta.json."""
    return settings.state_dir / "sales" / sale_id


def _file_sale(settings: Settings, sale_id: str) -> tuple[SaleMeta, FileStore] | None:
    """The file sale's meta and store, or None when `sale_id` is not a file sale of this state dir."""
    home = sale_dir(settings, check_sale_id(sale_id))
    meta_path = home / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = cast(SaleMeta, json.loads(meta_path.read_text()))
        path = Path(meta["path"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"ticket sale {sale_id!r}: its {meta_path} is unreadable") from None
    if not path.is_absolute():
        raise ConfigError(
            f"ticket sale {sale_id!r}: its ticket file was recorded as the relative path {path}, which names a "
            f"different file from every other directory; not touching it (remove {home} by hand)"
        )
    return meta, FileStore.at(path)


def _check_ours(sale_id: str, store: FileStore, *, ticket: bool) -> None:
    """Refuse to go on unless the ledger (and with `ticket`, ticket.json) still hold this sale's data.

    The files live wherever `--file` put them; another program may have replaced them since. A missing
    file is fine (there is nothing to lose); a file that is not the sale's is never overwritten or deleted.
    """
    if ticket and (store.path.exists() or store.path.is_symlink()):
        try:
            data = store.read()
            ok = isinstance(data, dict) and isinstance(data.get("count"), int)
        except (OSError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(
                f'ticket sale {sale_id!r}: {store.path} no longer holds a {{"count": ...}} ticket file; not touching it'
            )
    if store.ledger.exists() or store.ledger.is_symlink():
        try:
            with open(store.ledger, encoding="utf-8") as fh:
                ok = all(_is_row_of(line, sale_id) for line in fh if line.strip())
        except (OSError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"ticket sale {sale_id!r}: {store.ledger} is not this sale's ledger; not touching it")


def _is_row_of(line: str, sale_id: str) -> bool:
    row = json.loads(line)
    return isinstance(row, dict) and row.get("sale") == sale_id


def report(settings: Settings, sale_id: str) -> SaleReport:
    """Re-read a sale's ledger and count its outcome."""
    found = _file_sale(settings, sale_id)
    if found is not None:
        meta, store = found
        if not store.ledger.exists():
            raise NotFound(f"ticket sale {sale_id!r}: its ledger {store.ledger} is gone")
        _check_ours(sale_id, store, ticket=False)
        sales, failures = store.rows()
        summary = tickets.summarize(
            sales, failures, stock=int(meta["stock"]), buyers=int(meta["buyers"]), final_counter=store.count()
        )
        result: SaleReport = {
            "sale_id": sale_id,
            "store": "file",
            "mode": meta["mode"],
            "meta": meta,
            "summary": summary,
            "outcomes": sales + failures,
        }
    else:
        with _redis(settings, sale_id) as r:
            result = network.report(r, sale_id)
    result["machine"] = machine_facts(settings.start_method)
    return result


def reset(settings: Settings, sale_id: str) -> SaleChange:
    """Put the stock back and empty the ledger; the sale id and parameters stay."""
    found = _file_sale(settings, sale_id)
    if found is not None:
        meta, store = found
        _check_ours(sale_id, store, ticket=True)
        try:
            store.create(int(meta["stock"]))
        except OSError as exc:
            raise ConfigError(f"ticket sale {sale_id!r}: cannot reset {store.path}: {exc.strerror or exc}") from None
        return {"sale_id": sale_id, "store": "file", "reset": True, "stock": meta["stock"]}
    with _redis(settings, sale_id) as r:
        stored = store_redis.reset_sale(r, sale_id)
        return {"sale_id": sale_id, "store": "redis", "reset": True, "stock": stored["stock"]}


def delete(settings: Settings, sale_id: str) -> SaleChange:
    """Remove the sale: its files, or its Redis keys."""
    found = _file_sale(settings, sale_id)
    if found is not None:
        _meta, store = found
        _check_ours(sale_id, store, ticket=True)
        try:
            store.path.unlink(missing_ok=True)
            store.ledger.unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigError(f"ticket sale {sale_id!r}: cannot delete {store.path}: {exc.strerror or exc}") from None
        shutil.rmtree(sale_dir(settings, sale_id), ignore_errors=True)
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

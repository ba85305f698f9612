"""Re-read, reset or delete a sale, whichever store it lives in (the file sales of this state dir, or Redis).

A file sale needs no Redis: the caller hands in `open_redis`, which is called only for a sale that is
not a file sale of this state dir, and opens the Redis the caller resolved for it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import cast

from tasks import tickets
from workers.errors import ConfigError, NotFound
from workers.redis_server import Conn
from workers.settings import Settings, machine_facts
from workers.tickets import network, store_redis
from workers.tickets.records import SaleChange, SaleMeta, SaleReport
from workers.tickets.store_file import FileStore

OpenRedis = Callable[[], AbstractContextManager[Conn]]
"""Opens the Redis to look in for a sale that is not a file sale of this state dir (closed on exit)."""

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
            store.read()
        except (OSError, ValueError):
            raise ConfigError(
                f'ticket sale {sale_id!r}: {store.path} no longer holds a {{"count": ...}} ticket file; not touching it'
            ) from None
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


def report(settings: Settings, sale_id: str, open_redis: OpenRedis) -> SaleReport:
    """Re-read a sale's ledger and count its outcome."""
    found = _file_sale(settings, sale_id)
    if found is None:
        with open_redis() as conn:
            result = network.report(conn.client, sale_id)
    else:
        meta, store = found
        if not store.ledger.exists():
            raise NotFound(f"ticket sale {sale_id!r}: its ledger {store.ledger} is gone")
        _check_ours(sale_id, store, ticket=False)
        sales, failures = store.rows()
        summary = tickets.summarize(
            sales, failures, stock=int(meta["stock"]), buyers=int(meta["buyers"]), final_counter=store.count()
        )
        result = {
            "sale_id": sale_id,
            "store": "file",
            "mode": meta["mode"],
            "meta": meta,
            "summary": summary,
            "outcomes": sales + failures,
        }
    result["machine"] = machine_facts(settings.start_method)
    return result


def reset(settings: Settings, sale_id: str, open_redis: OpenRedis) -> SaleChange:
    """Put the stock back and empty the ledger; the sale id and parameters stay."""
    found = _owned_file_sale(settings, sale_id)
    if found is None:
        with open_redis() as conn:
            stored = store_redis.reset_sale(conn.client, sale_id)
        return {"sale_id": sale_id, "store": "redis", "reset": True, "stock": stored["stock"]}
    meta, store = found
    with _refused_by_os(sale_id, "reset", store.path):
        store.create(int(meta["stock"]))
    return {"sale_id": sale_id, "store": "file", "reset": True, "stock": meta["stock"]}


def delete(settings: Settings, sale_id: str, open_redis: OpenRedis) -> SaleChange:
    """Remove the sale: its files, or its Redis keys."""
    found = _owned_file_sale(settings, sale_id)
    if found is None:
        with open_redis() as conn:
            store_redis.delete_sale(conn.client, sale_id)
        return {"sale_id": sale_id, "store": "redis", "deleted": True}
    _meta, store = found
    with _refused_by_os(sale_id, "delete", store.path):
        store.path.unlink(missing_ok=True)
        store.ledger.unlink(missing_ok=True)
    shutil.rmtree(sale_dir(settings, sale_id), ignore_errors=True)
    return {"sale_id": sale_id, "store": "file", "deleted": True}


def _owned_file_sale(settings: Settings, sale_id: str) -> tuple[SaleMeta, FileStore] | None:
    """The file sale about to be changed, once its files are checked to still be its own."""
    found = _file_sale(settings, sale_id)
    if found is not None:
        _check_ours(sale_id, found[1], ticket=True)
    return found


@contextlib.contextmanager
def _refused_by_os(sale_id: str, doing: str, path: Path) -> Iterator[None]:
    """An OSError in the block becomes one ConfigError line naming the sale and the file."""
    try:
        yield
    except OSError as exc:
        raise ConfigError(f"ticket sale {sale_id!r}: cannot {doing} {path}: {exc.strerror or exc}") from None

"""The buyer job function worker nodes run (on their allow-list, `cli/node.py`).

A networked sale enqueues either one `buy` job per buyer, or (`--per-job K`) one `tasks.batch.run_batch`
job per K buyers naming `buy` as its task: the node fans those K buyers out over its Pool processes.
Either way a buyer uses its node's Redis (`nodectx.connection()`, rebuilt per process from the node's URL;
job arguments never carry a URL or a client) and, in `host-lock` mode, its node's one Lock.
"""

from __future__ import annotations

from tasks.registry import name_of
from tasks.tickets import Outcome
from workers import nodectx
from workers.tickets import redis_buyer


def buy(sale_id: str, buyer: str) -> Outcome:
    """One buyer of sale `sale_id`: start barrier, one purchase attempt in the sale's mode, its outcome."""
    return redis_buyer.buy(nodectx.connection(), sale_id, buyer, host_lock=nodectx.host_lock())


BUY = name_of(buy)
"""Registered name of the buyer job function (also the task name given to batch jobs)."""

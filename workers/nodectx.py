"""Per-process context inside a worker node: which node, its Redis, and its host-wide Lock.

Set once in every process of a node (slots and Pool processes) from values the node passes down at
process creation; never a Redis client across a process boundary, only its URL. (How those processes
start and end is `workers.proclife`'s.)
"""

from __future__ import annotations

from typing import Any

import redis

_node = ""
_url: str | None = None
_client: redis.Redis | None = None
_host_lock: Any = None


def init(node_name: str, redis_url: str | None, host_lock: Any) -> None:
    """Called at start of each node process."""
    global _node, _url, _client, _host_lock
    _node = node_name
    _url = redis_url
    _client = None
    _host_lock = host_lock


def node_name() -> str:
    """The node this process belongs to, or '' outside a node (e.g. a stock `rq worker`)."""
    return _node


def redis_url() -> str | None:
    """This node's Redis URL, or None outside a node."""
    return _url


def connection() -> redis.Redis:
    """This node's Redis (rebuilt per process from the URL); outside a node, the current RQ job's."""
    global _client
    if _url is not None:
        if _client is None:
            _client = redis.Redis.from_url(_url)
        return _client
    from rq import get_current_job

    job = get_current_job()
    if job is None:
        raise RuntimeError("no node Redis and no current RQ job")
    return job.connection


def host_lock() -> Any:
    """The node's multiprocessing.Lock shared by all its processes, or None outside a node."""
    return _host_lock

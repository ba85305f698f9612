"""workers/nodectx.py: the per-process context of a node's processes (node name, Redis rebuilt from its URL,
host lock); how those processes start and end is test_proclife's."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator

import pytest
import redis

from workers import nodectx

fork = mp.get_context("fork")


@pytest.fixture
def node_context() -> Iterator[None]:
    """nodectx's globals are put back after the test."""
    saved = (nodectx._node, nodectx._url, nodectx._client, nodectx._host_lock)
    yield
    if nodectx._client is not None:
        nodectx._client.close()
    nodectx._node, nodectx._url, nodectx._client, nodectx._host_lock = saved


def test_init_sets_the_node_and_connection_is_rebuilt_once_per_process_from_the_url(node_context, redis_url) -> None:
    lock = fork.Lock()
    nodectx.init("n7", redis_url, lock)
    assert nodectx.node_name() == "n7" and nodectx.redis_url() == redis_url and nodectx.host_lock() is lock
    conn = nodectx.connection()
    assert conn is nodectx.connection()  # one client per process
    assert conn.ping() and isinstance(conn, redis.Redis)
    nodectx.init("n8", redis_url, None)  # a new init drops the old client
    assert nodectx.connection() is not conn and nodectx.host_lock() is None
    conn.close()


def test_outside_a_node_and_a_job_there_is_no_connection(node_context) -> None:
    nodectx.init("", None, None)
    assert nodectx.node_name() == "" and nodectx.redis_url() is None
    with pytest.raises(RuntimeError, match="no node Redis and no current RQ job"):
        nodectx.connection()

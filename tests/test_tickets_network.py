"""Networked-sale bookkeeping on an in-memory Redis: which nodes make the start barrier's party, and caches."""

from __future__ import annotations

import time

from workers import defaults
from workers.heartbeat import node_key
from workers.tickets import network, store_redis
from workers.tickets.records import SaleSpec


def beat(r, name, *, slots, queues, age=0.0):
    """A node heartbeat as `mplab worker` writes it, `age` seconds old."""
    r.hset(node_key(name), mapping={"last_beat": str(time.time() - age), "slots_total": str(slots), "queues": queues})
    r.sadd(defaults.NODES_SET, name)


def test_the_party_counts_only_fresh_nodes_serving_the_sales_queue(fake_redis):
    beat(fake_redis, "fresh", slots=2, queues="default,high")
    beat(fake_redis, "other-queue", slots=8, queues="high")
    beat(fake_redis, "stale", slots=4, queues="default", age=defaults.STALE_AFTER + 5)
    assert network.live_nodes(fake_redis, "default") == {"fresh": 2}
    assert network.live_nodes(fake_redis, "high") == {"fresh": 2, "other-queue": 8}
    result = network.enqueue_sale(
        fake_redis,
        "s-party",
        SaleSpec(stock=5, buyers=20, mode="atomic", per_job=1, window=0.0, lock_timeout=1.0, party=0, queue="default"),
    )
    assert result["party"] == 2 and result["nodes_at_submit"] == {"fresh": 2}


def test_an_explicit_party_larger_than_the_buyers_is_capped(fake_redis):
    result = network.enqueue_sale(
        fake_redis,
        "s-cap",
        SaleSpec(stock=5, buyers=3, mode="atomic", per_job=1, window=0.0, lock_timeout=1.0, party=50, queue="default"),
    )
    assert result["party"] == 3
    assert store_redis.load_meta(fake_redis, "s-cap")["party"] == 3


def test_a_long_running_process_caches_the_parameters_of_a_bounded_number_of_sales(fake_redis, monkeypatch):
    monkeypatch.setattr(store_redis, "_params_cache", type(store_redis._params_cache)())
    sale_ids = [f"s-{i}" for i in range(store_redis.PARAMS_CACHE_SIZE + 51)]
    for i, sale_id in enumerate(sale_ids):
        params = store_redis.SaleParams(sale_id, 1, "atomic", 0.0, 1, 1.0, 1.0)
        store_redis.create_sale(fake_redis, params, buyers=1, extra={})
        if i == len(sale_ids) - 1:
            store_redis.sale_params(fake_redis, sale_ids[50])  # the oldest cached one, used again: stays
        store_redis.sale_params(fake_redis, sale_id)
    assert len(store_redis._params_cache) == store_redis.PARAMS_CACHE_SIZE
    assert sale_ids[50] in store_redis._params_cache and sale_ids[51] not in store_redis._params_cache
    assert sale_ids[0] not in store_redis._params_cache and sale_ids[-1] in store_redis._params_cache

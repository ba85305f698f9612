"""Networked-sale bookkeeping on an in-memory Redis: which nodes make the start barrier's party, and caches."""

from __future__ import annotations

import time

import pytest
from rq.job import Job
from rq.results import Result
from rq.serializers import JSONSerializer

from tasks import tickets
from workers import defaults
from workers.errors import JobTimeout
from workers.heartbeat import node_key
from workers.tickets import network, redis_buyer, store_redis
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


def _sale(r, sale_id, buyers=3):
    spec = SaleSpec(stock=5, buyers=buyers, mode="atomic", per_job=1, window=0.0, lock_timeout=1.0, party=1)
    return network.enqueue_sale(r, sale_id, spec)


def test_following_a_sale_no_node_serves_times_out_with_its_counts(fake_redis):
    _sale(fake_redis, "s-idle")
    seen = []
    with pytest.raises(JobTimeout, match=r"s-idle: 0/3 buyers done after 0 s"):
        network.follow(fake_redis, "s-idle", timeout=0.3, on_progress=lambda *counts: seen.append(counts))
    assert seen and set(seen) == {(0, 3, 0)}
    assert network.job_states(fake_redis, "s-idle")["by_status"] == {"queued": 3}  # left for the nodes


def test_following_ends_when_every_job_ended_and_names_the_first_failure(fake_redis):
    _sale(fake_redis, "s-gone")
    first, second, third = network.job_ids(fake_redis, "s-gone")
    fake_redis.delete(Job.key_for(first))  # expired
    job = Job.fetch(second, connection=fake_redis, serializer=JSONSerializer)
    Result.create_failure(job, ttl=60, exc_string="Traceback (most recent call last):\nValueError: sold out twice")
    fake_redis.hset(Job.key_for(second), "status", "failed")
    fake_redis.hset(Job.key_for(third), "status", "stopped")
    states = network.follow(fake_redis, "s-gone", timeout=30)["job_states"]
    assert states == {
        "total": 3,
        "by_status": {"expired": 1, "failed": 1, "stopped": 1},
        "first_error": "ValueError: sold out twice",
    }


def test_following_stops_once_every_buyer_is_counted_while_jobs_still_run(fake_redis):
    _sale(fake_redis, "s-counted", buyers=2)
    for name in tickets.buyer_names(2):
        assert redis_buyer.record_crash(fake_redis, "s-counted", name, RuntimeError("node lost"))
    seen = []
    result = network.follow(fake_redis, "s-counted", timeout=30, on_progress=lambda *counts: seen.append(counts))
    assert seen == [(2, 2, 0)] and result["summary"]["sold"] == 0
    assert result["job_states"]["by_status"] == {"queued": 2}  # not waited for: every buyer has an outcome

"""The per-job wire-cost counters: linear in the job count (fixed cost removed) and consistent."""

from __future__ import annotations

import pytest

from workers.errors import ConfigError
from workers.netcost import job_cost


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_stock_worker_cost_per_job_does_not_depend_on_the_job_count(redis_url: str, real_redis) -> None:
    small = job_cost(redis_url, "stock", jobs=10)
    large = job_cost(redis_url, "stock", jobs=40)
    # The start/stop cost is subtracted, so what is left is per job: the same for 10 and 40 jobs.
    assert abs(small.round_trips_per_job - large.round_trips_per_job) <= 1.0
    assert abs(small.commands_per_job - large.commands_per_job) <= 2.0
    # A round trip carries at least one command; RQ's bookkeeping is several of each per job.
    assert 3 <= large.round_trips_per_job <= large.commands_per_job
    # The measurement leaves nothing of its own in Redis.
    assert not [k for k in real_redis.scan_iter("rq:*mplab-netcost*")]
    assert not [k for k in real_redis.scan_iter("rq:job:*")]


def test_rejects_out_of_range_sizes(redis_url: str) -> None:
    with pytest.raises(ConfigError):
        job_cost(redis_url, "stock", jobs=0)
    with pytest.raises(ConfigError):
        job_cost(redis_url, "stock", jobs=10, batch=10_000)

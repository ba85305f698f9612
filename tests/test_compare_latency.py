"""`mplab compare --rtt`: options, and the RQ modes measured behind the latency proxy (real nodes, real Redis)."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from collections.abc import Callable

import pytest
import redis
from typer.testing import CliRunner

from cli.main import app
from workers.compare import isolation, latency, local
from workers.compare.isolation import Footprint, RunRecord
from workers.compare.plan import Plan, Trivial

runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        ["--rtt", "abc"],
        ["--rtt", "nan"],
        ["--rtt", "-1"],
        ["--rtt", "1e6"],
        ["--rtt", "0,1,2,3,4,5"],
        ["--rtt", "1,1"],
        ["--rtt", "1", "--nodes", "0"],
    ],  # fmt: skip
)
def test_bad_rtt_values_are_one_line_and_exit_2(args: list[str]) -> None:
    result = runner.invoke(app, ["compare", *args])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


TINY = Plan(
    sizes=((1000, 8),),
    trivial=Trivial(local=40, process=2, subprocess=1, rq=40, rq_batched=40, stock_simple=30, stock_forking=2),
    k_sweep=(1000, (1, 4), 8),
    subprocess_tasks=1,
)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(240)
def test_latency_reaches_every_rq_mode_and_nothing_is_left(redis_url: str, real_redis: redis.Redis) -> None:
    ctx = mp.get_context("fork")
    record = RunRecord.new()
    footprint = Footprint(real_redis, record)
    footprint.save()
    closers: list[Callable[[bool], None]] = []
    serial = local.SerialChild(ctx)
    closers.append(serial.close)
    try:
        with local.warm_pool(ctx, 2) as (pool, _):
            run = latency.LatencyRun(redis_url, TINY, serial, pool, 2, 1, 1, "fork", footprint, lambda s: None,
                                     closers)  # fmt: skip
            near, far = run.point(0, []), run.point(20, [])
    finally:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                close(False)
        isolation.remove_run(real_redis, record)
    # Every job of every RQ mode was checked against serial inside measure_size; here, the delay's effect:
    # one job costs several sequential round trips, so 20 ms of RTT adds well over 20 ms per job.
    assert far.overhead_ms_per_job > near.overhead_ms_per_job + 20
    assert far.jobs_per_s.median < near.jobs_per_s.median
    assert near.vs_stock_simple is not None and far.vs_stock_simple is not None
    modes = {(r.workload, r.mode) for r in far.rows}
    assert {("cpu", "rq per-task"), ("trivial", "rq batched"), ("trivial", "stock SimpleWorkers"),
            ("k-sweep", "rq batched K=4")} <= modes  # fmt: skip
    assert not list(real_redis.scan_iter(f"*{record.run_id}*"))

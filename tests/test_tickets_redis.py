"""The Redis store with real buyer processes on this host and a real redis-server: every mode, the ledger,
a redis-lock holder SIGKILLed mid-purchase, separate sales, reset and delete."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time

import pytest
import redis
from typer.testing import CliRunner

from tasks import tickets
from tests.test_tickets_local import root_app
from workers.errors import NotFound
from workers.settings import Settings
from workers.tickets import engine, network, store_redis

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture
def settings(redis_url, tmp_path):
    return Settings(redis_url=redis_url, state_dir=tmp_path / "state")


def seats(result):
    return sorted(row["seat"] for row in result["outcomes"] if "seat" in row)


def test_naive_get_set_oversells_with_buyers_released_together(settings):
    result = engine.run_local(settings, stock=5, buyers=12, mode="naive", window=0.05)
    s = result["summary"]
    assert s["sold"] == 12 and s["oversold"] == 7  # everyone read 5 > 0
    assert s["seats_sold_twice"] >= 1
    assert s["lost_updates"] > 0


def test_host_lock_on_one_host_is_correct(settings):
    result = engine.run_local(settings, stock=5, buyers=12, mode="host-lock", window=0.01)
    s = result["summary"]
    assert s["sold"] == 5 and s["oversold"] == 0 and s["seats_sold_twice"] == 0
    assert seats(result) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("mode", ["redis-lock", "atomic", "watch"])
def test_safe_modes_sell_exactly_the_stock_when_buyers_outnumber_it_tenfold(settings, mode):
    result = engine.run_local(settings, stock=4, buyers=40, mode=mode, window=0.005)
    s = result["summary"]
    assert s["sold"] == 4 and s["oversold"] == 0 and s["seats_sold_twice"] == 0
    assert seats(result) == [1, 2, 3, 4]
    assert s["final_counter"] == 0 and s["lost_updates"] == 0
    assert s["failed_buyers"] == 36 and s["failure_reasons"] == {"sold out": 36}
    assert len(s["sold_per_pid"]) == 4  # four different processes bought


def test_stock_zero_sells_nothing(settings):
    result = engine.run_local(settings, stock=0, buyers=3, mode="atomic", window=0.0)
    assert result["summary"]["sold"] == 0 and result["summary"]["failed_buyers"] == 3


def _stalled_buyer(url, sale_id):
    """A redis-lock buyer that takes the lock, reads the counter, then hangs inside its race window."""

    class Stall:
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds):
            time.sleep(3600)

    store_redis.time = Stall()
    store_redis.buy(redis.Redis.from_url(url), sale_id, "victim", align=lambda: None)


@pytest.mark.slow
def test_redis_lock_holder_killed_mid_purchase_lock_expires_and_the_sale_goes_on(redis_url, real_redis):
    sale_id = engine.new_sale_id()
    params = store_redis.SaleParams(sale_id, 5, "redis-lock", 0.01, 1, 3.0, 5.0)  # lock timeout 3 s
    store_redis.create_sale(real_redis, params, buyers=8, extra={"store": "redis", "where": "local"})
    ctx = mp.get_context("fork")
    victim = ctx.Process(target=_stalled_buyer, args=(redis_url, sale_id))
    victim.start()
    try:
        k = store_redis.SaleKeys(sale_id)
        deadline = time.monotonic() + 30
        while real_redis.get(k.key("holder")) is None:
            assert time.monotonic() < deadline, "the victim never took the lock"
            time.sleep(0.005)
        assert json.loads(real_redis.get(k.key("holder")))["pid"] == victim.pid
        os.kill(victim.pid, signal.SIGKILL)  # mid-purchase: after its GET, before its SET
    finally:
        victim.join(10)
    assert victim.exitcode == -signal.SIGKILL
    assert real_redis.pttl(k.lock) > 0  # the dead holder's lock is still there...

    result = engine.run_buyers(ctx, redis_url, real_redis, sale_id, tickets.buyer_names(7))

    assert real_redis.exists(k.lock) == 0  # ...until it expired and the others went on
    s = result["summary"]
    assert s["sold"] == 5 and s["oversold"] == 0 and s["seats_sold_twice"] == 0
    assert seats(result) == [1, 2, 3, 4, 5]
    assert s["missing_buyers"] == 1  # the victim: no sale, no failure row
    assert all(row["buyer"] != "victim" for row in result["outcomes"])
    assert result["crashed_buyers"] == []


def test_sales_have_their_own_namespace_reset_and_delete(settings, real_redis):
    first = engine.run_local(settings, stock=3, buyers=5, mode="atomic", window=0.0)
    second = engine.run_local(settings, stock=2, buyers=5, mode="atomic", window=0.0)
    assert first["sale_id"] != second["sale_id"]
    assert engine.report(settings, first["sale_id"])["summary"]["sold"] == 3
    assert engine.report(settings, second["sale_id"])["summary"]["sold"] == 2
    assert {first["sale_id"], second["sale_id"]} <= set(store_redis.list_sales(real_redis))

    engine.reset(settings, first["sale_id"])
    reset = engine.report(settings, first["sale_id"])["summary"]
    assert reset["sold"] == 0 and reset["final_counter"] == 3
    assert engine.report(settings, second["sale_id"])["summary"]["sold"] == 2  # untouched

    engine.delete(settings, first["sale_id"])
    with pytest.raises(NotFound):
        engine.report(settings, first["sale_id"])
    assert real_redis.keys(f"{store_redis.PREFIX}{first['sale_id']}:*") == []
    assert engine.report(settings, second["sale_id"])["summary"]["sold"] == 2


def test_cli_report_unknown_sale_in_redis_is_one_line_exit_1(redis_url, tmp_path):
    result = runner.invoke(
        root_app(), ["--redis-url", redis_url, "--state-dir", str(tmp_path), "tickets", "report", "s00"]
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == ["error: no ticket sale 's00' in this Redis"]


def test_submit_without_nodes_enqueues_and_report_shows_nothing_sold_yet(redis_url, tmp_path, real_redis):
    result = runner.invoke(
        root_app(),
        ["--redis-url", redis_url, "--state-dir", str(tmp_path), "tickets", "submit", "--mode", "atomic",
         "--stock", "3", "--buyers", "10", "--per-job", "4", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["jobs"] == 3 and data["nodes_at_submit"] == {}
    assert network.job_states(real_redis, data["sale_id"])["by_status"] == {"queued": 3}
    report = engine.report(Settings(redis_url=redis_url, state_dir=tmp_path), data["sale_id"])
    assert report["summary"]["sold"] == 0 and report["summary"]["missing_buyers"] == 10


def test_bench_measures_every_mode_and_states_ratios(real_redis):
    from workers.tickets import bench

    result = bench.run(real_redis, attempts=50, repeats=1)
    assert set(result["per_s"]) == set(bench.MODES)
    assert result["ratio_to_getset"]["getset"] == 1.0
    assert store_redis.list_sales(real_redis) == []  # bench sales cleaned up

"""The Redis store with real buyer processes on this host and a real redis-server: every mode, the ledger,
a redis-lock holder SIGKILLed mid-purchase, separate sales, reset and delete."""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
import time

import pytest
import redis
from typer.testing import CliRunner

from cli.main import app
from tasks import tickets
from workers.errors import NotFound
from workers.redis_server import Conn
from workers.settings import Settings
from workers.tickets import local, manage, network, records, redis_buyer, store_redis
from workers.tickets.records import SaleSpec

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture
def settings(redis_url, tmp_path):
    return Settings(redis_url=redis_url, state_dir=tmp_path / "state")


@pytest.fixture
def conn(redis_url, real_redis):
    """The Redis the CLI would have resolved, handed to the engines."""
    return Conn(real_redis, redis_url, "test Redis")


@pytest.fixture
def open_redis(conn):
    """What `manage` calls for a sale that is not a file sale: here the test's Redis, left open."""
    return lambda: contextlib.nullcontext(conn)


def seats(result):
    return sorted(row["seat"] for row in result["outcomes"] if "seat" in row)


def test_naive_get_set_oversells_with_buyers_released_together(settings, conn):
    result = local.run(settings, SaleSpec(stock=5, buyers=12, mode="naive", window=0.05), conn=conn)
    s = result["summary"]
    assert s["sold"] == 12 and s["oversold"] == 7  # everyone read 5 > 0
    assert s["seats_sold_twice"] >= 1
    assert s["lost_updates"] > 0


def test_host_lock_on_one_host_is_correct(settings, conn):
    result = local.run(settings, SaleSpec(stock=5, buyers=12, mode="host-lock", window=0.01), conn=conn)
    s = result["summary"]
    assert s["sold"] == 5 and s["oversold"] == 0 and s["seats_sold_twice"] == 0
    assert seats(result) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("mode", ["redis-lock", "atomic", "watch"])
def test_safe_modes_sell_exactly_the_stock_when_buyers_outnumber_it_tenfold(settings, conn, real_redis, mode):
    result = local.run(settings, SaleSpec(stock=4, buyers=40, mode=mode, window=0.005), conn=conn)
    s = result["summary"]
    assert s["sold"] == 4 and s["oversold"] == 0 and s["seats_sold_twice"] == 0
    assert seats(result) == [1, 2, 3, 4]
    assert s["final_counter"] == 0 and s["lost_updates"] == 0
    assert s["failed_buyers"] == 36 and s["failure_reasons"] == {"sold out": 36}
    assert len(s["sold_per_pid"]) == 4  # four different processes bought
    assert result["crashed_buyers"] == []
    assert real_redis.exists(store_redis.SaleKeys(result["sale_id"]).key("holder")) == 0  # no stale holder


def test_stock_zero_sells_nothing(settings, conn):
    result = local.run(settings, SaleSpec(stock=0, buyers=3, mode="atomic", window=0.0), conn=conn)
    assert result["summary"]["sold"] == 0 and result["summary"]["failed_buyers"] == 3


def _stalled_buyer(url, sale_id):
    """A redis-lock buyer that takes the lock, reads the counter, then hangs inside its race window."""

    class Stall:
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds):
            time.sleep(3600)

    redis_buyer.time = Stall()
    redis_buyer.buy(redis.Redis.from_url(url), sale_id, "victim", align=lambda: None)


@pytest.mark.slow
def test_redis_lock_holder_killed_mid_purchase_lock_expires_and_the_sale_goes_on(redis_url, real_redis):
    sale_id = records.new_sale_id()
    # lock timeout 10 s: the dead holder's lock must still be there when checked right after the kill
    params = store_redis.SaleParams(sale_id, 5, "redis-lock", 0.01, 1, 10.0, 5.0)
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
        holder = json.loads(real_redis.get(k.key("holder")))
        assert holder["pid"] == victim.pid and real_redis.get(k.lock) == holder["token"].encode()
        os.kill(victim.pid, signal.SIGKILL)  # mid-purchase: after its GET, before its SET
    finally:
        victim.join(10)
    assert victim.exitcode == -signal.SIGKILL
    assert real_redis.pttl(k.lock) > 0  # the dead holder's lock is still there...

    result = local.run_redis_buyers(ctx, redis_url, real_redis, sale_id, tickets.buyer_names(7))

    assert real_redis.exists(k.lock) == 0  # ...until it expired and the others went on
    assert real_redis.exists(k.key("holder")) == 0  # each later holder cleared its entry before releasing
    s = result["summary"]
    assert s["sold"] == 5 and s["oversold"] == 0 and s["seats_sold_twice"] == 0
    assert seats(result) == [1, 2, 3, 4, 5]
    assert s["missing_buyers"] == 1  # the victim: no sale, no failure row
    assert all(row["buyer"] != "victim" for row in result["outcomes"])
    assert result["crashed_buyers"] == []


def test_sales_have_their_own_namespace_reset_and_delete(settings, conn, open_redis, real_redis):
    first = local.run(settings, SaleSpec(stock=3, buyers=5, mode="atomic", window=0.0), conn=conn)
    second = local.run(settings, SaleSpec(stock=2, buyers=5, mode="atomic", window=0.0), conn=conn)
    assert first["sale_id"] != second["sale_id"]
    assert manage.report(settings, first["sale_id"], open_redis)["summary"]["sold"] == 3
    assert manage.report(settings, second["sale_id"], open_redis)["summary"]["sold"] == 2
    assert {first["sale_id"], second["sale_id"]} <= set(store_redis.list_sales(real_redis))

    manage.reset(settings, first["sale_id"], open_redis)
    reset = manage.report(settings, first["sale_id"], open_redis)["summary"]
    assert reset["sold"] == 0 and reset["final_counter"] == 3
    assert manage.report(settings, second["sale_id"], open_redis)["summary"]["sold"] == 2  # untouched

    manage.delete(settings, first["sale_id"], open_redis)
    with pytest.raises(NotFound):
        manage.report(settings, first["sale_id"], open_redis)
    assert real_redis.keys(f"{store_redis.PREFIX}{first['sale_id']}:*") == []
    assert manage.report(settings, second["sale_id"], open_redis)["summary"]["sold"] == 2


def test_cli_report_unknown_sale_in_redis_is_one_line_exit_1(redis_url, tmp_path):
    result = runner.invoke(app, ["--redis-url", redis_url, "--state-dir", str(tmp_path), "tickets", "report", "s00"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == ["error: no ticket sale 's00' in this Redis"]


def test_submit_without_nodes_enqueues_and_report_shows_nothing_sold_yet(redis_url, tmp_path, real_redis):
    result = runner.invoke(
        app,
        ["--redis-url", redis_url, "--state-dir", str(tmp_path), "tickets", "submit", "--mode", "atomic",
         "--stock", "3", "--buyers", "10", "--per-job", "4", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["jobs"] == 3 and data["nodes_at_submit"] == {}
    assert network.job_states(real_redis, data["sale_id"])["by_status"] == {"queued": 3}
    shown = runner.invoke(
        app, ["--redis-url", redis_url, "--state-dir", str(tmp_path), "tickets", "report", data["sale_id"], "--json"]
    )
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["summary"]["sold"] == 0 and report["summary"]["missing_buyers"] == 10


def test_bench_measures_every_mode_and_states_ratios(real_redis):
    from workers.tickets import bench

    result = bench.run(real_redis, attempts=50, repeats=1)
    assert set(result["per_s"]) == set(bench.MODES)
    assert result["ratio_to_getset"]["getset"] == 1.0
    assert store_redis.list_sales(real_redis) == []  # bench sales cleaned up


def test_a_local_buyer_whose_start_barrier_breaks_records_why_and_exits_1_quietly(redis_url, real_redis, capfd):
    sale_id = records.new_sale_id()
    params = store_redis.SaleParams(sale_id, 5, "atomic", 0.0, 1, 1.0, 5.0)
    store_redis.create_sale(real_redis, params, buyers=1, extra={"store": "redis", "where": "local"})
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    barrier.abort()
    proc = ctx.Process(target=local.redis_buyer_process, args=(redis_url, sale_id, "Alice", barrier, ctx.Lock()))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 1
    s = network.report(real_redis, sale_id)["summary"]
    assert s["sold"] == 0 and s["failure_reasons"] == {"BrokenBarrierError": 1} and s["missing_buyers"] == 0
    assert store_redis.counter(real_redis, sale_id) == 5
    assert "Traceback" not in capfd.readouterr().err


def test_a_crash_after_the_sale_is_not_counted_as_a_failure_too(real_redis):
    sale_id = records.new_sale_id()
    params = store_redis.SaleParams(sale_id, 5, "atomic", 0.0, 1, 1.0, 5.0)
    store_redis.create_sale(real_redis, params, buyers=2, extra={"store": "redis", "where": "local"})
    redis_buyer.buy(real_redis, sale_id, "Alice", align=lambda: None)  # sold: its ledger row is written
    assert not redis_buyer.record_crash(real_redis, sale_id, "Alice", ConnectionError("after the sale"))
    assert redis_buyer.record_crash(real_redis, sale_id, "Bob", ConnectionError("before anything"))
    sales, failures = store_redis.rows(real_redis, sale_id)
    assert [row["buyer"] for row in sales] == ["Alice"]
    assert [(row["buyer"], row["reason"]) for row in failures] == [("Bob", "ConnectionError")]


def test_bench_leaves_no_sale_behind_when_interrupted(real_redis, monkeypatch):
    from workers.tickets import bench

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setitem(redis_buyer.ATTEMPTS, "watch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench.run(real_redis, attempts=50, repeats=2)
    assert store_redis.list_sales(real_redis) == []
    assert real_redis.keys(f"{store_redis.PREFIX}bench-*") == []

"""`mplab compare`: a real --quick run end to end (real Redis, real nodes), and its bad options."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time

import psutil
import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import mplab_cmd
from workers.compare import report
from workers.compare.local import Run
from workers.errors import ResultMismatch

runner = CliRunner()

LOCAL_MODES = {"serial", "process per task", "pool chunksize=1", "pool auto", "subprocess per task"}
RQ_MODES = {"rq per-task", "rq batched"}


@pytest.mark.slow
@pytest.mark.integration
def test_quick_compare_runs_every_mode_and_workload(tmp_path):
    out_csv = tmp_path / "rows.csv"
    result = runner.invoke(app, ["compare", "--quick", "--json", "-", "--csv", str(out_csv)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    header = data["header"]
    assert header["start_method"] and header["python"] and header["cores"] >= 1
    assert header["redis_version"] and header["redis"].startswith("embedded redis-server")
    assert header["rq_slots"] >= 1 and header["node_idle_rss_mb"]
    rows = data["rows"]
    cpu_sizes = {r["size"] for r in rows if r["workload"] == "cpu"}
    assert len(cpu_sizes) >= 2  # a sweep
    for size in cpu_sizes:
        modes = {r["mode"] for r in rows if r["workload"] == "cpu" and r["size"] == size}
        assert modes == LOCAL_MODES | RQ_MODES
    trivial = {r["mode"] for r in rows if r["workload"] == "trivial"}
    assert LOCAL_MODES | RQ_MODES <= trivial
    assert {"reference: 2 stock rq workers (forking)", "reference: 2 stock SimpleWorkers"} <= trivial
    for r in rows:
        assert r["wall_s"] > 0 and r["tasks_per_s"] > 0 and r["speedup"] > 0 and r["efficiency"] > 0, r
        assert r["results_match_serial"] is True
        assert r["overhead_ms_per_task"] >= 0
    for r in (r for r in rows if r["mode"] in RQ_MODES):
        assert r["enqueue_ms"] > 0 and r["queue_wait_ms"] >= 0 and r["running_ms"] > 0 and r["drain_jobs_per_s"] > 0
    assert {r["channel"] for r in data["ipc"]} == {"Pipe", "Queue", "Redis list over TCP"}
    assert all(r["rtt_us"] > 0 for r in data["ipc"])
    assert data["enqueue"]["enqueue_many_jobs_per_s"] > 0
    assert data["crossover"]["by_size"] and data["batch_k"]["by_k"]
    assert {t["target"].split(" ")[0] for t in data["targets"]} >= {"Pool", "RQ", "enqueue_many", "node"}
    with out_csv.open() as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)


def test_a_mode_that_disagrees_with_serial_fails_loudly():
    with pytest.raises(ResultMismatch, match="1 of 3 results differ"):
        report.check("pool auto", "cpu n=10", Run(0.1, [1, 2, 4], 2), [1, 2, 3])


def test_crossover_is_the_smallest_size_reaching_90_percent_of_pool():
    def r(size, mode, eff):
        return {"workload": "cpu", "size": size, "task_ms": size / 1000, "mode": mode, "efficiency": eff}

    rows = [r(10, "pool auto", 0.9), r(10, "rq per-task", 0.3), r(100, "pool auto", 0.95), r(100, "rq per-task", 0.9)]
    assert report.crossover(rows)["rq_per_task_reaches_90pct_of_pool_at_size"] == 100


@pytest.mark.parametrize(
    "args, needle",
    [
        (["compare", "--nodes", "-1"], "--nodes must be >= 0"),
        (["compare", "--node-pool", "0"], "--node-pool must be >= 1"),
        (["compare", "--queue", "nope"], "unknown queue 'nope'"),
    ],
)
def test_bad_options_are_one_line_errors(args, needle):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_nodes_zero_without_running_nodes_is_a_clear_error(redis_url):
    result = runner.invoke(app, ["--redis-url", redis_url, "compare", "--quick", "--nodes", "0"])
    assert result.exit_code == 2, result.output
    assert "--nodes 0 needs running worker nodes" in result.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_leaves_nothing_running():
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) mid-run: every process it started ends."""
    proc = subprocess.Popen(
        mplab_cmd("compare", "--quick"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    started: list[psutil.Process] = []
    while time.monotonic() < deadline:  # until its nodes, Pool and Redis are all up
        started = me.children(recursive=True)
        if sum("worker" in " ".join(p.cmdline()) for p in started if p.is_running()) >= 2:
            break
        time.sleep(0.2)
    assert any(p.name().startswith("redis-server") for p in started), started
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    _, alive = psutil.wait_procs(started, timeout=20)
    assert not alive, alive
    assert "Traceback" not in proc.stderr.read().decode()
    proc.stderr.close()

"""Real embedded redis-server, real `mplab worker` processes: the foundation's behaviour end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from typer.testing import CliRunner

from cli.main import app
from tasks import batch, cpu
from tests.chaos_tools import wait_until
from workers import client, submit

pytestmark = [pytest.mark.integration, pytest.mark.slow]
runner = CliRunner()


def test_sixteen_cpu_tasks_through_the_cli_come_back_correct_on_two_processes(nodes, redis_url):
    n1 = nodes.start("n1", pool=2)
    result = runner.invoke(
        app,
        ["--redis-url", redis_url, "submit", "cpu", "--tasks", "16", "--size", "200000", "--wait", "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["tasks_done"] == 16
    assert summary["wrong_results"] == 0
    assert summary["jobs"] == {"finished": 16}
    children = {f"n1:{p.pid}" for p in psutil.Process(n1.pid).children()}
    assert len(summary["tasks_per_pid"]) == 2 and set(summary["tasks_per_pid"]) <= children  # run by n1, on two
    assert sum(summary["tasks_per_pid"].values()) == 16
    assert 0 < summary["task_cpu_s"] <= 2 * summary["wall_s"] + 0.01  # two processes: at most 2 CPU-s per s


def test_batch_job_reports_progress_in_meta_while_running(nodes, real_redis):
    nodes.start("n1", pool=2)
    # 80 tasks of ~20 ms in chunks of one: the node writes progress at least every 0.1 s for ~1 s
    job = Queue("default", connection=real_redis, serializer=JSONSerializer).enqueue(
        batch.run_batch, "tasks.cpu.sum_squares", [[500_000]] * 80, 1
    )
    seen = []

    def running_progress():
        job.refresh()
        progress = job.meta.get("progress")
        if progress and job.get_status() == JobStatus.STARTED:
            seen.append(progress["done"])
        return job.get_status() == JobStatus.FINISHED

    wait_until(running_progress, timeout=60, step=0.01)
    assert any(0 < done < 80 for done in seen), seen  # partial progress observed mid-run
    assert seen == sorted(seen)
    result = job.return_value()
    assert result["values"] == [submit.sum_squares_expected(500_000)] * 80
    assert len(result["tasks_per_pid"]) == 2  # fanned out over the node's Pool
    assert job.meta["progress"] == {"done": 80, "total": 80}


def test_unregistered_and_pickled_jobs_are_refused_and_never_run(nodes, real_redis, tmp_path: Path):
    nodes.start("n1", pool=1)
    marker = tmp_path / "pwned"
    json_q = Queue("default", connection=real_redis, serializer=JSONSerializer)
    evil = json_q.enqueue_call("os.system", args=(f"touch {marker}",))
    pickled = Queue("default", connection=real_redis).enqueue(os.system, f"touch {marker}2")
    good = json_q.enqueue(cpu.sum_squares, 10)
    wait_until(lambda: good.get_status(refresh=True) == JobStatus.FINISHED)
    wait_until(lambda: evil.get_status(refresh=True) == JobStatus.FAILED)
    assert Job.fetch(pickled.id, connection=real_redis).get_status() == JobStatus.FAILED
    assert not marker.exists() and not Path(f"{marker}2").exists()
    assert "not a registered mplab task" in client.failure_reason(evil)
    assert "not JSON" in client.failure_reason(Job.fetch(pickled.id, connection=real_redis))
    assert {evil.id, pickled.id} <= set(json_q.failed_job_registry.get_job_ids())
    assert good.return_value()["value"] == 285


def test_sigterm_mid_batch_leaves_no_child_and_loses_no_job(nodes, real_redis):
    proc = nodes.start("n1", "--grace", "0.5", pool=2)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) == 4  # 2 slots + Pool(2): the process tree the README describes
    long_batch = client.enqueue_many(
        real_redis, "default", client.task_calls("tasks.cpu.sum_squares", [[3_000_000]] * 40, 40)
    )
    job = long_batch[0]
    wait_until(lambda: (job.refresh() or True) and job.meta.get("progress", {}).get("done", 0) > 0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, alive
    job.refresh()
    # 40 tasks of ~0.1 s on two processes cannot end within the 0.5 s grace: the node must re-queue it
    assert job.get_status() == JobStatus.QUEUED
    assert job.id in Queue("default", connection=real_redis, serializer=JSONSerializer).job_ids
    assert "grace period" in job.meta["interruptions"][0]
    assert not real_redis.exists("mplab:node:n1")  # heartbeat removed on clean exit
    # a new node picks the re-queued job up and finishes it
    nodes.start("n2", pool=2)
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=60)


def test_stock_rq_worker_with_json_serializer_runs_mplab_jobs(redis_url, real_redis):
    job = Queue("low", connection=real_redis, serializer=JSONSerializer).enqueue(
        batch.run_batch, "tasks.cpu.sum_squares", [[10], [20]]
    )
    rq_bin = Path(sys.executable).with_name("rq")
    subprocess.run(
        [
            str(rq_bin),
            "worker",
            "--burst",
            "--serializer",
            "json",
            "-w",
            "rq.worker.SimpleWorker",
            "-u",
            redis_url,
            "low",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.latest_result().return_value["values"] == [285, 2470]


def test_status_shows_node_heartbeat_and_queue_counts(nodes, redis_url, real_redis):
    nodes.start("n1", pool=2)
    submit.submit_cpu(real_redis, "high", tasks=3, size=10, batch=1)
    wait_until(lambda: Queue("high", connection=real_redis).finished_job_registry.count == 3)
    result = runner.invoke(app, ["--redis-url", redis_url, "status", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    high = next(q for q in info["queues"] if q["queue"] == "high")
    assert high == {"queue": "high", "queued": 0, "started": 0, "finished": 3, "failed": 0, "deferred": 0,
                    "scheduled": 0, "canceled": 0}  # fmt: skip
    (node,) = info["nodes"]
    assert node["name"] == "n1" and node["slots_total"] == 2 and node["pool_size"] == 2
    assert node["rss_bytes"] > 10 * 2**20 and node["processes"] == 5
    assert 0 <= node["age_s"] < 10 and isinstance(node["stale"], bool)  # the key's TTL is 10 s
    human = runner.invoke(app, ["--redis-url", redis_url, "status"])
    assert "n1" in human.stdout and "high" in human.stdout


def test_result_command_shows_value_and_failure_reason(nodes, redis_url, real_redis):
    n1 = nodes.start("n1", pool=1)
    children = [p.pid for p in psutil.Process(n1.pid).children()]
    good = Queue("default", connection=real_redis, serializer=JSONSerializer).enqueue(cpu.sum_squares, 4)
    bad = Queue("default", connection=real_redis, serializer=JSONSerializer).enqueue(cpu.sum_squares, -4)
    wait_until(
        lambda: bad.get_status(refresh=True) == JobStatus.FAILED and good.get_status(refresh=True) == JobStatus.FINISHED
    )
    ok = runner.invoke(app, ["--redis-url", redis_url, "result", good.id, "--json"])
    assert ok.exit_code == 0
    value = json.loads(ok.stdout)["result"]
    assert value["value"] == 14 and value["node"] == "n1" and value["pid"] in children
    assert value["host"] == socket.gethostname()
    assert value["enqueued"] <= value["started"] <= value["ended"]
    failed = runner.invoke(app, ["--redis-url", redis_url, "result", bad.id])
    assert failed.exit_code == 1 and "n must be >= 0" in failed.stdout


def test_empty_batch_finishes_at_once(nodes, real_redis):
    nodes.start("n1", pool=1)
    job = Queue("default", connection=real_redis, serializer=JSONSerializer).enqueue(
        batch.run_batch, "tasks.cpu.sum_squares", []
    )
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED)
    assert job.return_value()["values"] == [] and job.return_value()["count"] == 0


def test_a_timed_out_batch_does_not_hand_its_result_to_the_next_batch(nodes, real_redis):
    nodes.start("n1", pool=1)  # one slot, one Pool process: B's chunks queue behind A's
    q = Queue("default", connection=real_redis, serializer=JSONSerializer)
    slow = q.enqueue(batch.run_batch, "tasks.cpu.sum_squares", [[3_000_000]] * 30, 1, job_timeout=1)
    quick = q.enqueue(batch.run_batch, "tasks.cpu.sum_squares", [[10], [20]], 1)
    wait_until(lambda: quick.get_status(refresh=True) == JobStatus.FINISHED, timeout=90)
    assert slow.get_status(refresh=True) == JobStatus.FAILED
    assert "JobTimeoutException" in client.failure_reason(slow)
    assert quick.return_value()["values"] == [285, 2470]  # its own, not the slow batch's late reply


def test_a_pool_process_that_dies_requeues_its_batch_once_then_fails_it(nodes, real_redis):
    proc = nodes.start("n1", pool=1)
    q = Queue("default", connection=real_redis, serializer=JSONSerializer)
    doomed = q.enqueue(batch.run_batch, "tasks.cpu.sum_squares", [[3_000_000]] * 40, 1)

    def kill_its_pool_process():
        wait_until(lambda: (doomed.refresh() or True) and doomed.meta.get("progress", {}).get("done", 0) > 0)
        slot_pids = {int(real_redis.hget("rq:worker:n1.slot1", "pid"))}
        (pool_proc,) = [p for p in psutil.Process(proc.pid).children() if p.pid not in slot_pids]
        pool_proc.kill()  # as the OOM killer would

    kill_its_pool_process()
    wait_until(lambda: (doomed.refresh() or True) and doomed.meta.get("pool_deaths") == 1, timeout=60)
    assert "Pool process" in doomed.meta["interruptions"][0] and "died" in doomed.meta["interruptions"][0]
    kill_its_pool_process()  # the re-queued batch runs again on the fresh Pool: its death fails it
    wait_until(lambda: doomed.get_status(refresh=True) == JobStatus.FAILED, timeout=60)
    reason = client.failure_reason(doomed)
    assert "Pool processes died" in reason and "2 runs" in reason, reason
    assert doomed.id in q.failed_job_registry.get_job_ids()
    after = q.enqueue(batch.run_batch, "tasks.cpu.sum_squares", [[10]], 1)
    wait_until(lambda: after.get_status(refresh=True) == JobStatus.FINISHED, timeout=60)
    assert after.return_value()["values"] == [285] and proc.poll() is None

"""`mplab jobs / result / cancel / requeue / purge / submit --retry --wait` against a real Redis and real nodes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest
from rq.job import Job
from rq.serializers import JSONSerializer
from typer.testing import CliRunner

from cli.main import app
from tests.node_tools import Nodes
from workers import client, redis_server

runner = CliRunner()
pytestmark = pytest.mark.integration


def cli(url: str, *args: str, input: str | None = None):
    return runner.invoke(app, ["--redis-url", url, *args], input=input)


def until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_cancel_a_queued_job_and_purge_empties_only_its_queue(redis_url, real_redis):
    keep = client.enqueue_many(real_redis, "other", [client.Call("tasks.cpu.trivial", [i]) for i in range(2)])
    doomed = client.enqueue_many(real_redis, "parked", [client.Call("tasks.cpu.trivial", [i]) for i in range(3)])

    out = cli(redis_url, "cancel", doomed[0].id)
    assert out.exit_code == 0, out.output
    assert "canceled (was queued)" in out.stdout
    assert client.queue(real_redis, "parked").count == 2
    assert real_redis.hget(Job.key_for(doomed[0].id), "status") == b"canceled"
    again = cli(redis_url, "cancel", doomed[0].id, "nosuchjob")
    assert again.exit_code == 1 and "it is canceled" in again.stderr and "no job with id 'nosuchjob'" in again.stderr

    declined = cli(redis_url, "purge", "parked", input="n\n")
    assert declined.exit_code == 1 and client.queue(real_redis, "parked").count == 2
    purged = cli(redis_url, "purge", "parked", "--yes", "--json")
    assert purged.exit_code == 0, purged.output
    assert json.loads(purged.stdout) == {"queue": "parked", "removed": 2}
    assert client.queue(real_redis, "parked").count == 0
    assert client.queue(real_redis, "other").count == 2  # the other queue is untouched
    assert all(real_redis.exists(Job.key_for(j.id)) for j in keep)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_failed_jobs_listed_with_reason_traceback_then_requeued_and_retry_succeeds(
    redis_url, real_redis, nodes: Nodes, tmp_path: Path
):
    nodes.start("ctl-n1", pool=1)
    failed = client.enqueue(real_redis, "default", client.Call("tasks.faults.fails_once", [str(tmp_path / "a")]))
    retried = client.enqueue(
        real_redis,
        "default",
        client.Call("tasks.faults.fails_once", [str(tmp_path / "b")]),
        client.JobOptions(retry=2),
    )
    assert client.wait(real_redis, [failed], timeout=60).jobs[0].status == "failed"
    assert client.wait(real_redis, [retried], timeout=60).check().jobs[0].value["value"] == "succeeded after a failure"
    assert client.fetch_job(real_redis, retried.id).retries_left == 1  # attempt 1 failed, attempt 2 succeeded

    listed = cli(redis_url, "jobs", "--status", "failed", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == [failed.id]
    assert rows[0]["reason"].startswith("RuntimeError: first attempt fails by design")
    human = cli(redis_url, "jobs", "--status", "failed")
    assert failed.id in human.stdout and "first attempt fails" in human.stdout

    plain, as_json = cli(redis_url, "result", failed.id), cli(redis_url, "result", failed.id, "--json")
    assert plain.exit_code == as_json.exit_code == 1  # the same exit code with and without --json
    assert json.loads(as_json.stdout)["status"] == "failed" and json.loads(as_json.stdout)["traceback"] is None
    tb = cli(redis_url, "result", failed.id, "--traceback")
    assert tb.exit_code == 1 and "Traceback (most recent call last)" in tb.stdout and "fails_once" in tb.stdout

    requeued = cli(redis_url, "requeue", failed.id)
    assert requeued.exit_code == 0, requeued.output
    assert client.wait(real_redis, [failed], timeout=60).check().jobs[0].status == "finished"
    assert cli(redis_url, "result", failed.id).exit_code == 0
    not_again = cli(redis_url, "requeue", failed.id)
    assert not_again.exit_code == 1 and "it is finished" in not_again.stderr
    assert "no failed jobs" in cli(redis_url, "requeue", "--failed").stdout


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_submit_wait_with_retry_options_and_batch_progress_in_result(redis_url, real_redis, nodes: Nodes):
    nodes.start("ctl-n2", pool=2)
    out = cli(redis_url, "submit", "cpu", "-t", "6", "-s", "20000", "-b", "3", "--retry", "1", "--job-timeout", "60",
              "--result-ttl", "120", "--wait", "--timeout", "60", "--json")  # fmt: skip
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["tasks_done"] == 6 and summary["wrong_results"] == 0 and summary["jobs"] == {"finished": 2}
    job = Job.fetch(summary["job_ids"][0], connection=real_redis, serializer=JSONSerializer)
    assert (job.timeout, job.result_ttl, job.retries_left) == (60, 120, 1)
    report = json.loads(cli(redis_url, "result", job.id, "--json").stdout)
    assert report["progress"] == {"done": 3, "total": 3}
    assert "3/3 tasks" in cli(redis_url, "result", job.id).stdout


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_retry_with_an_interval_comes_back_without_a_waiter(real_redis, nodes: Nodes, tmp_path: Path):
    """RQ leaves due retries to a scheduler process; every live node promotes them (no `submit --wait`)."""
    nodes.start("ctl-retry", pool=1)
    options = client.JobOptions(retry=1, retry_interval=1)
    job = client.enqueue(real_redis, "default", client.Call("tasks.faults.fails_once", [str(tmp_path / "m")]), options)
    until(lambda: job.get_status(refresh=True) == "finished", timeout=60)  # failed once, scheduled, ran again
    job.refresh()
    assert job.latest_result().return_value["value"] == "succeeded after a failure"
    assert job.retries_left == 0


def test_submit_wait_warns_when_no_node_serves_the_queue_and_honours_its_timeout(redis_url, real_redis):
    t0 = time.monotonic()
    out = cli(redis_url, "submit", "cpu", "-t", "1", "-s", "10", "-q", "nobody", "--wait", "--timeout", "0.5")
    assert time.monotonic() - t0 < 20
    assert out.exit_code == 1
    assert "no live worker node" in out.stderr and "had not ended after 0.5 s" in out.stderr
    assert client.queue(real_redis, "nobody").count == 1  # nothing lost: still queued


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_redis_down_refuses_while_a_live_node_is_attached(tmp_path: Path):
    state = ["--state-dir", str(tmp_path / "s")]
    up = runner.invoke(app, [*state, "redis", "up", "--json"])
    assert up.exit_code == 0, up.output
    pid = json.loads(up.stdout)["pid"]
    url = runner.invoke(app, [*state, "redis", "url"]).stdout.strip()
    node = Nodes(url, tmp_path)
    try:
        node.start("attached-n1", pool=1)
        refused = runner.invoke(app, [*state, "redis", "down"])
        assert refused.exit_code == 1 and "1 live worker node(s) use this server (attached-n1)" in refused.stderr
        assert psutil.pid_exists(pid)
    finally:
        node.stop_all()
        redis_server.connect(url).delete("mplab:node:attached-n1")
        down = runner.invoke(app, [*state, "redis", "down"])
    assert down.exit_code == 0, down.output
    until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 10)


def test_a_corrupted_job_hash_is_reported_not_crashed_on(redis_url, real_redis):
    bad_time, bad_status = (
        client.enqueue(real_redis, "default", client.Call("tasks.cpu.trivial", [i])) for i in (1, 2)
    )
    real_redis.hset(Job.key_for(bad_time.id), "created_at", "yesterday")
    real_redis.hset(Job.key_for(bad_status.id), "status", "bogus")
    for job in (bad_time, bad_status):
        out = cli(redis_url, "result", job.id)
        words = " ".join(out.stdout.split())  # the table wraps long reasons
        assert out.exit_code == 1 and "has a hash RQ cannot read" in words and "internal error" not in out.output
    listed = json.loads(cli(redis_url, "jobs", "--json").stdout)
    assert {row["id"]: row["status"] for row in listed} == {bad_time.id: "unreadable", bad_status.id: "unreadable"}
    refused = cli(redis_url, "cancel", bad_time.id)
    assert refused.exit_code == 1 and "cannot read" in refused.stderr and "Traceback" not in refused.output

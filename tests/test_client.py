"""workers/client.py: enqueue, the one waiter (progress, deadline, Redis loss), results, retries."""

from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from tests.node_tools import Nodes
from tests.redis_tools import RestartableRedis
from workers import client, defaults, redis_server
from workers.errors import ConfigError, JobFailed, JobTimeout, PayloadTooLarge, RedisUnavailable
from workers.slot import SlotWorker
from workers.submit import sum_squares_expected


def drain(conn, *queues: str) -> None:
    """Run every queued job in this process (a non-forking slot worker), then return."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker = SlotWorker(list(queues or ["default"]), connection=conn, serializer=JSONSerializer)
        worker.work(burst=True, logging_level="WARNING")
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


# -- enqueue ------------------------------------------------------------------------------------------
def test_task_calls_group_batches_and_carry_their_task_count():
    calls = client.task_calls("tasks.cpu.sum_squares", [[1]] * 5, batch=2)
    assert [c.func for c in calls] == [client.BATCH_FUNCTION] * 3
    assert [c.tasks for c in calls] == [2, 2, 1]
    assert calls[0].args == ["tasks.cpu.sum_squares", [[1], [1]]]
    assert [c.tasks for c in client.task_calls("tasks.cpu.trivial", [[1], [2]], batch=1)] == [1, 1]


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"job_timeout": 0}, "--job-timeout"),
        ({"result_ttl": 10**9}, "--result-ttl"),
        ({"retry": 11}, "--retry"),
        ({"retry_interval": math.nan}, "--retry-interval"),
    ],
)
def test_job_options_have_finite_ranges(changes, needle):
    with pytest.raises(ConfigError, match=needle):
        client.JobOptions(**changes)


def test_payload_limits_are_checked_before_anything_is_sent(fake_redis):
    huge = client.Call("tasks.cpu.trivial", ["x" * (9 * 2**20)])
    with pytest.raises(PayloadTooLarge, match=f"the limit is {defaults.MAX_PAYLOAD_BYTES}"):
        client.enqueue_many(fake_redis, "default", [client.Call("tasks.cpu.trivial", [1]), huge])
    assert client.queue(fake_redis, "default").count == 0  # all or nothing
    with pytest.raises(ConfigError, match="--batch"):
        client.task_calls("tasks.cpu.trivial", [[1]] * 3, batch=10**6)
    too_many = client.Call(client.BATCH_FUNCTION, ["tasks.cpu.trivial", [[1]] * (defaults.MAX_BATCH_ITEMS + 1)])
    with pytest.raises(PayloadTooLarge, match="items"):
        client.enqueue(fake_redis, "default", too_many)


def test_options_reach_rq(fake_redis):
    job = client.enqueue(fake_redis, "q1", client.Call("tasks.cpu.trivial", [1]), client.JobOptions(7, 99, 2, 0))
    job = Job.fetch(job.id, connection=fake_redis, serializer=JSONSerializer)
    assert (job.timeout, job.result_ttl, job.retries_left) == (7, 99, 2)


# -- the waiter ---------------------------------------------------------------------------------------
def test_wait_reports_progress_results_and_values_in_order(fake_redis):
    jobs = client.enqueue_many(fake_redis, "default", client.task_calls("tasks.cpu.sum_squares", [[100]] * 5, 2))
    drain(fake_redis)
    seen: list[tuple[int, int]] = []
    outcome = client.wait(fake_redis, jobs, timeout=10, on_progress=lambda d, t: seen.append((d, t)))
    assert outcome.check() is outcome
    assert outcome.tasks_done == 5 and seen[-1] == (5, 5)
    assert outcome.values() == [sum_squares_expected(100)] * 5
    assert dict(outcome.statuses) == {"finished": 3}


def test_wait_gives_up_at_its_deadline_and_says_so(fake_redis):
    job = client.enqueue(fake_redis, "nobody", client.Call("tasks.cpu.trivial", [1]))
    t0 = time.monotonic()
    outcome = client.wait(fake_redis, [job], timeout=0.3)
    assert time.monotonic() - t0 < 10
    assert outcome.timed_out and outcome.jobs[0].status == "timeout"
    with pytest.raises(JobTimeout, match=job.id):
        outcome.check()
    assert client.queue(fake_redis, "nobody").count == 1  # still queued: nothing lost


def test_a_failure_comes_back_with_its_reason_and_retry_succeeds_on_attempt_two(fake_redis, tmp_path: Path):
    marker = str(tmp_path / "once")
    plain = client.enqueue(fake_redis, "default", client.Call("tasks.faults.fails_once", [marker]))
    drain(fake_redis)
    outcome = client.wait(fake_redis, [plain], timeout=5)
    assert outcome.failures == {plain.id: f"RuntimeError: first attempt fails by design ({marker} now exists)"}
    with pytest.raises(JobFailed, match="first attempt fails by design"):
        outcome.check()
    assert "Traceback" in client.failure_text(Job.fetch(plain.id, connection=fake_redis, serializer=JSONSerializer))

    other = str(tmp_path / "twice")
    retried = client.enqueue(
        fake_redis, "default", client.Call("tasks.faults.fails_once", [other]), client.JobOptions(retry=1)
    )
    drain(fake_redis)
    assert client.wait(fake_redis, [retried], timeout=5).check().jobs[0].value["value"] == "succeeded after a failure"


def test_retry_with_an_interval_is_promoted_when_due(fake_redis, tmp_path: Path):
    job = client.enqueue(
        fake_redis,
        "default",
        client.Call("tasks.faults.fails_once", [str(tmp_path / "m")]),
        client.JobOptions(retry=1, retry_interval=1),
    )
    drain(fake_redis)
    q = client.queue(fake_redis, "default")
    assert q.scheduled_job_registry.count == 1 and q.count == 0
    assert client.promote_due(fake_redis, ["default"]) == 0  # not due yet
    time.sleep(1.1)
    assert client.promote_due(fake_redis, ["default"]) == 1
    assert client.promote_due(fake_redis, ["default"]) == 0  # moved once
    drain(fake_redis)
    assert client.wait(fake_redis, [job], timeout=5).check().jobs[0].status == "finished"


def test_fetch_results_pipelines_values_reasons_and_timestamps(fake_redis, tmp_path: Path):
    ok = client.enqueue(fake_redis, "default", client.Call("tasks.cpu.trivial", [42]))
    bad = client.enqueue(fake_redis, "default", client.Call("tasks.faults.fails_once", [str(tmp_path / "x")]))
    drain(fake_redis)
    got = client.fetch_results(fake_redis, [ok.id, bad.id, "nosuchjob"])
    assert got[0].ok and got[0].value["value"] == 42
    assert got[0].enqueued_at <= got[0].started_at <= got[0].ended_at
    assert not got[1].ok and got[1].reason.startswith("RuntimeError: first attempt fails")
    assert got[2].status == "missing"
    assert client.states(fake_redis, [ok.id, bad.id, "nosuchjob"]) == {
        ok.id: "finished",
        bad.id: "failed",
        "nosuchjob": "missing",
    }
    outcome = client.wait(fake_redis, [ok, bad], timeout=5)
    assert outcome.jobs[0].result is not None and outcome.jobs[0].result.ended_at >= outcome.jobs[0].result.started_at


def test_run_returns_the_value_or_raises_the_failure(fake_redis, tmp_path: Path):
    done: dict[str, object] = {}
    runner = threading.Thread(
        target=lambda: done.update(v=client.run(fake_redis, "r", client.Call("tasks.cpu.trivial", [5]), timeout=20))
    )
    runner.start()
    until_queued(fake_redis, "r")
    drain(fake_redis, "r")
    runner.join(timeout=20)
    assert done["v"]["value"] == 5
    failing = threading.Thread(
        target=lambda: done.update(
            e=pytest.raises(
                JobFailed,
                client.run,
                fake_redis,
                "r",
                client.Call("tasks.faults.fails_once", [str(tmp_path / "f")]),
                timeout=20,
            )
        )
    )
    failing.start()
    until_queued(fake_redis, "r")
    drain(fake_redis, "r")
    failing.join(timeout=20)
    assert "first attempt fails by design" in str(done["e"].value)


def until_queued(conn, name: str) -> None:
    deadline = time.monotonic() + 10
    while client.queue(conn, name).count == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_redis_that_stays_away_ends_the_wait_with_one_error():
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(RedisUnavailable, match="lost Redis"):
        client.wait(dead, ["abc"], timeout=1.0)
    assert time.monotonic() - t0 < 15


# -- against a real redis-server that is killed and restarted, with a real node ----------------------
@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_waiter_survives_a_redis_restart_and_a_job_longer_than_socket_timeouts(tmp_path: Path):
    server = RestartableRedis(tmp_path).start()
    url = server.url
    nodes = Nodes(url, tmp_path)
    conn = redis_server.connect(url)
    try:
        job = client.enqueue(conn, "default", client.Call("tasks.faults.nap", [7.0]))
        got: dict[str, object] = {}
        waiter = threading.Thread(target=lambda: got.update(out=client.wait(conn, [job], timeout=90)), daemon=True)
        waiter.start()
        time.sleep(0.5)
        server.kill()  # kill -9: the waiter's connection breaks mid-poll
        time.sleep(2.0)
        server.start()  # same port, password and data (AOF)
        nodes.start("restart-n1", pool=1)  # the 7 s job runs only now, after the restart
        waiter.join(timeout=80)
        assert not waiter.is_alive(), "the waiter never returned"
        outcome = got["out"]
        assert isinstance(outcome, client.Outcome)
        assert outcome.check().jobs[0].value["value"] == 7.0
        assert outcome.wall_s > 7.0
    finally:
        nodes.stop_all()
        conn.close()
        server.kill()

"""LeanWorker keeps RQ's behaviour (statuses, registries, results, failures, timeouts, retries, dependents,
result_ttl=0, suspension, worker registration) while cutting the round trips per job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from rq import Retry, get_current_job
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend
from rq.worker import SimpleWorker

from workers.lean_worker import LeanWorker
from workers.netproxy import LatencyProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def add(a: int, b: int) -> int:
    return a + b


def boom() -> None:
    raise ValueError("boom on purpose")


def fails_first_time(marker: str) -> str:
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("first attempt fails")
    return "second attempt"


def who_is_working() -> list[list[str]]:
    """What RQ (and so `rq info`) sees while this job runs."""
    job = get_current_job()
    assert job is not None
    return [[w.name, w.get_state(), w.get_current_job_id() or ""] for w in SimpleWorker.all(connection=job.connection)]


def queue(client: redis.Redis, name: str = "lean") -> Queue:
    return Queue(name, connection=client, serializer=JSONSerializer)


def work(client: redis.Redis, *queues: Queue) -> LeanWorker:
    worker = LeanWorker(list(queues) or [queue(client)], connection=client, serializer=JSONSerializer)
    worker.work(burst=True)
    return worker


def test_success_lands_in_the_same_places_as_with_rq(real_redis: redis.Redis) -> None:
    q = queue(real_redis)
    jobs = [q.enqueue(add, i, 1) for i in range(5)]
    worker = work(real_redis)
    for i, job in enumerate(jobs):
        job.refresh()
        assert job.get_status() == JobStatus.FINISHED
        assert job.latest_result().return_value == i + 1
        assert job.started_at is not None and job.ended_at is not None and job.last_heartbeat is not None
        assert job.worker_name == worker.name
    assert sorted(q.finished_job_registry.get_job_ids()) == sorted(j.id for j in jobs)
    assert q.started_job_registry.count == 0
    assert real_redis.hget(worker.key, "successful_job_count") == b"5"  # kept 60 s after a burst worker's death
    assert not list(real_redis.scan_iter("rq:execution:*"))
    assert real_redis.zcard("rq:wip:lean") == 0
    assert q.count == 0 and real_redis.llen(q.intermediate_queue_key) == 0


def test_worker_is_registered_busy_with_the_job_while_it_runs(real_redis: redis.Redis) -> None:
    job = queue(real_redis).enqueue(who_is_working)
    worker = work(real_redis)
    seen = job.latest_result().return_value
    assert [worker.name, "busy", job.id] in seen


def test_failure_timeout_and_retry_take_rqs_paths(real_redis: redis.Redis, tmp_path: Path) -> None:
    q = queue(real_redis)
    failing = q.enqueue(boom)
    slow = q.enqueue(time.sleep, 5, job_timeout=1)
    retried = q.enqueue(fails_first_time, str(tmp_path / "marker"), retry=Retry(max=1))
    work(real_redis)
    failing.refresh()
    assert failing.get_status() == JobStatus.FAILED
    assert "boom on purpose" in failing.latest_result().exc_string
    slow.refresh()
    assert slow.get_status() == JobStatus.FAILED
    assert "JobTimeoutException" in slow.latest_result().exc_string
    assert set(q.failed_job_registry.get_job_ids()) == {failing.id, slow.id}
    retried.refresh()
    assert retried.get_status() == JobStatus.FINISHED
    assert retried.latest_result().return_value == "second attempt"
    assert retried.retries_left == 0


def test_dependents_are_enqueued_when_their_dependency_finishes(real_redis: redis.Redis) -> None:
    q = queue(real_redis)
    first = q.enqueue(add, 1, 2)
    second = q.enqueue(add, 3, 4, depends_on=first)
    assert second.get_status() == JobStatus.DEFERRED
    work(real_redis)
    second.refresh()
    assert second.get_status() == JobStatus.FINISHED
    assert second.latest_result().return_value == 7


def test_result_ttl_zero_leaves_no_job_behind(real_redis: redis.Redis) -> None:
    job = queue(real_redis).enqueue(add, 1, 1, result_ttl=0)
    work(real_redis)
    assert not real_redis.exists(job.key)
    assert queue(real_redis).finished_job_registry.count == 0


def test_a_suspended_burst_worker_runs_nothing_until_resumed(real_redis: redis.Redis) -> None:
    job = queue(real_redis).enqueue(add, 2, 2)
    suspend(real_redis)
    work(real_redis)
    assert Job.fetch(job.id, connection=real_redis, serializer=JSONSerializer).get_status() == JobStatus.QUEUED
    resume(real_redis)
    work(real_redis)
    assert Job.fetch(job.id, connection=real_redis, serializer=JSONSerializer).get_status() == JobStatus.FINISHED


def test_at_most_eight_sequential_round_trips_per_job(redis_url: str) -> None:
    """The goal of the lean path (stock SimpleWorker: ~20), counted on the wire by the proxy."""
    with LatencyProxy.for_url(redis_url) as proxy:
        client = redis.Redis.from_url(proxy.url(redis_url))
        counts = []
        for jobs in (10, 40):
            for i in range(jobs):
                queue(client).enqueue(add, i, i)
            before = proxy.stats().round_trips
            work(client)
            counts.append(proxy.stats().round_trips - before)
        client.close()
    per_job = (counts[1] - counts[0]) / 30
    assert per_job <= 8, f"{per_job:.1f} round trips per job"


@pytest.mark.slow
def test_sigterm_while_the_end_transaction_is_in_flight_keeps_the_job_finished(redis_url: str, real_redis) -> None:
    """A stop request between the server committing a job's success and the worker reading the reply is a
    warm stop: the job stays finished (a StopRequested raised mid-transaction used to fail it)."""
    import os
    import signal
    import subprocess
    import sys

    q = queue(real_redis, "lean-stop")
    job = q.enqueue(add, 20, 22)
    with LatencyProxy.for_url(redis_url, rtt_ms=400) as proxy:  # the reply's way back takes 200 ms
        env = {**os.environ, "RQ_REDIS_URL": proxy.url(redis_url)}
        cmd = [sys.executable, "-m", "rq.cli", "worker", "-w", "workers.lean_worker.LeanWorker",
               "--serializer", "rq.serializers.JSONSerializer", "lean-stop"]  # fmt: skip
        worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 40
            while not real_redis.zscore(q.finished_job_registry.key, job.id):  # committed on the server
                assert time.monotonic() < deadline and worker.poll() is None
                time.sleep(0.005)
            worker.send_signal(signal.SIGTERM)  # the worker is still waiting for the EXEC reply
            assert worker.wait(timeout=30) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    job.refresh()
    assert job.get_status() == JobStatus.FINISHED
    assert job.latest_result().return_value == 42
    assert q.failed_job_registry.count == 0

"""workers/slot.py over fakeredis with a non-forking worker: JSON jobs only, refusal of anything not on
the allow-list, batches without a node."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from cli.node import NODE_FUNCTIONS
from workers import client, submit
from workers.slot import SlotWorker, refusal_reason


def run_slot(conn) -> None:
    # RQ installs SIGINT/SIGTERM handlers in work() and never restores them: keep pytest's own.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        SlotWorker(["default"], connection=conn, serializer=JSONSerializer).work(burst=True, logging_level="WARNING")
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


# -- serializer and refusal -------------------------------------------------------------------------
def test_jobs_are_stored_as_json(fake_redis):
    job_list = submit.submit_cpu(fake_redis, "default", tasks=3, size=100, batch=1)
    assert len(job_list) == 3
    raw = fake_redis.hget(Job.key_for(job_list[0].id), "data")
    import zlib

    payload = json.loads(zlib.decompress(raw))  # JSON, not pickle
    assert payload[0] == "tasks.cpu.sum_squares" and payload[2] == [100]


def test_slot_runs_registered_jobs_and_batches_without_a_node(fake_redis):
    job_list = submit.submit_cpu(fake_redis, "default", tasks=5, size=1000, batch=2)
    assert [job.meta.get("tasks", 1) for job in job_list] == [2, 2, 1]
    run_slot(fake_redis)
    for job in job_list:
        assert job.get_status(refresh=True) == JobStatus.FINISHED
        assert job.return_value()["values"] == [submit.sum_squares_expected(1000)] * len(job.args[1])


def test_unregistered_function_is_refused_and_never_runs(fake_redis, tmp_path: Path):
    marker = tmp_path / "pwned"
    q = Queue("default", connection=fake_redis, serializer=JSONSerializer)
    job = q.enqueue_call("os.system", args=(f"touch {marker}",))
    run_slot(fake_redis)
    assert not marker.exists()
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert job.id in q.failed_job_registry.get_job_ids()
    assert "'os.system' is not a registered mplab task" in client.failure_reason(job)


def test_pickled_payload_is_refused(fake_redis, tmp_path: Path):
    marker = tmp_path / "pwned"
    pickled = Queue("default", connection=fake_redis)  # RQ's default serializer is pickle
    job = pickled.enqueue(os.system, f"touch {marker}")
    run_slot(fake_redis)
    assert not marker.exists()
    job = Job.fetch(job.id, connection=fake_redis)
    assert job.get_status() == JobStatus.FAILED
    assert refusal_reason(
        Job.fetch(job.id, connection=fake_redis, serializer=JSONSerializer), NODE_FUNCTIONS
    ).startswith("refused: the job's payload is not JSON")
    assert "not JSON" in client.failure_reason(job)

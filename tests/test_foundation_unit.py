"""Unit tests over fakeredis with a non-forking worker: allow-lists, settings, serializer, refusal."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from cli.node import NODE_FUNCTIONS
from tasks import batch, catalog, cpu, registry
from workers import client, submit
from workers.errors import ConfigError
from workers.settings import Settings, check_queue_name, parse_queues
from workers.slot import SlotWorker, refusal_reason


def run_slot(conn) -> None:
    # RQ installs SIGINT/SIGTERM handlers in work() and never restores them: keep pytest's own.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        SlotWorker(["default"], connection=conn, serializer=JSONSerializer).work(burst=True, logging_level="WARNING")
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


# -- allow-list ------------------------------------------------------------------------------------
def test_allow_lists_hold_exactly_what_they_are_given_by_import_path():
    assert catalog.TASKS.names() == [
        "tasks.cpu.cpu_intensive_task", "tasks.cpu.sum_squares", "tasks.cpu.trivial",
        "tasks.faults.fails_once", "tasks.faults.nap",
    ]  # fmt: skip
    assert "tasks.batch.run_batch" not in catalog.TASKS  # a batch of batches is no task
    assert set(NODE_FUNCTIONS.names()) - set(catalog.TASKS.names()) == {
        "tasks.batch.run_batch", "workers.lab.jobs.run_experiment", "workers.tickets.node_job.buy",
    }  # fmt: skip
    for name in ("os.system", "tasks.registry.task", "tasks.catalog.call_raw"):
        assert name not in NODE_FUNCTIONS
        with pytest.raises(registry.UnknownTask, match=name.replace(".", r"\.")):
            NODE_FUNCTIONS.resolve(name)


def test_an_allow_list_survives_pickling_by_reference():
    import pickle

    again = pickle.loads(pickle.dumps(NODE_FUNCTIONS))  # what a spawn-started slot or Pool process gets
    assert again.names() == NODE_FUNCTIONS.names()
    assert again.resolve("tasks.cpu.sum_squares") is cpu.sum_squares
    assert again.raw("tasks.cpu.sum_squares")(4) == 14


def test_task_returns_envelope_with_where_and_when():
    wall0, cpu0 = time.time(), time.process_time()
    env = cpu.sum_squares(200_000)
    wall1, cpu1 = time.time(), time.process_time()
    assert env["value"] == sum(i * i for i in range(200_000))
    assert env["pid"] == os.getpid()
    assert env["task"] == "tasks.cpu.sum_squares"
    assert wall0 <= env["started"] <= env["ended"] <= wall1  # wall-clock stamps of this very call
    assert 0 < env["cpu_s"] <= cpu1 - cpu0  # the call's own CPU time: some, and no more than it took
    json.dumps(env)  # JSON-able


def test_cpu_intensive_task_matches_chapter_definition():
    numbers = [50, 120, 200]
    env = cpu.cpu_intensive_task("Task-1", numbers)
    assert env["value"] == ["Task-1", sum(sum(i * i for i in range(n)) for n in numbers)]
    with pytest.raises(ValueError):
        catalog.TASKS.raw("tasks.cpu.sum_squares")(-1)


def test_closed_form_matches_the_task():
    for n in (0, 1, 2, 10, 12345):
        assert submit.sum_squares_expected(n) == catalog.TASKS.raw("tasks.cpu.sum_squares")(n)


def test_serial_batch_equals_individual_calls():
    out = batch.run_batch("tasks.cpu.sum_squares", [[5], [6], [7]])
    assert out["values"] == [30, 55, 91]
    assert out["tasks_per_pid"] == {str(os.getpid()): 3}
    with pytest.raises(registry.UnknownTask):
        batch.run_batch("os.system", [["true"]])


# -- settings ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"pool_size": 0}, "pool size must be >= 1"),
        ({"start_method": "vfork"}, "start method must be one of"),
        ({"redis_url": "http://x"}, "Redis URL must start with"),
        ({"grace_period": -1}, "grace period"),
        ({"queues": ()}, "queues must be non-empty"),
    ],
)
def test_settings_reject_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        Settings(**changes)


def test_settings_queue_check_and_context():
    settings = Settings(queues=parse_queues("high, default,low"), start_method="spawn")
    assert settings.queues == ("high", "default", "low")
    assert settings.check_queue("low") == "low"
    with pytest.raises(ConfigError, match="unknown queue 'urgent'"):
        settings.check_queue("urgent")
    assert settings.mp_context().get_start_method() == "spawn"


def test_settings_from_options_reads_mplab_pool_from_the_given_environment():
    assert Settings.from_options({"MPLAB_POOL": "3"}).pool_size == 3
    assert Settings.from_options({}, queues="a,b").queues == ("a", "b")
    with pytest.raises(ConfigError, match="MPLAB_POOL must be an integer"):
        Settings.from_options({"MPLAB_POOL": "many"})
    with pytest.raises(ConfigError, match="pool size must be >= 1 and <= 256"):
        Settings.from_options({"MPLAB_POOL": "10000"})


@pytest.mark.parametrize("name", ["", "a b", "../x", "x" * 65, "q,r", "-lead"])
def test_bad_queue_names_are_refused(name):
    with pytest.raises(ConfigError, match="bad queue name"):
        check_queue_name(name)


def test_any_valid_queue_name_is_accepted():
    assert check_queue_name("urgent.jobs:v2") == "urgent.jobs:v2"


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

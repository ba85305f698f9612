"""tasks/registry.py, tasks/catalog.py and the tasks themselves: allow-lists, the envelope, batches."""

from __future__ import annotations

import json
import os
import time

import pytest

from cli.node import NODE_FUNCTIONS
from tasks import batch, catalog, cpu, registry
from workers import submit


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

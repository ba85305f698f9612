"""workers/pool.py: how a batch is cut into chunks, how Pool processes report progress, and how a Pool is
stopped even when one of its dead processes still holds the task queue's lock."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import threading
import time
from typing import Any

import psutil
import pytest

from tasks import catalog
from tasks.registry import UnknownTask
from workers import defaults, pool
from workers.pool import BatchPool, auto_chunksize, chunk, run_chunk, stop_pool

fork = mp.get_context("fork")
SQUARES = "tasks.cpu.sum_squares"


@pytest.mark.parametrize(("count", "size"), [(0, 3), (1, 3), (9, 3), (10, 3), (10, 1), (5, 50)])
def test_chunks_keep_every_item_in_order_and_only_the_last_is_short(count, size) -> None:
    items = [[i] for i in range(count)]
    parts = chunk(items, size)
    assert [item for part in parts for item in part] == items
    assert len(parts) == math.ceil(count / size)
    assert all(len(part) == size for part in parts[:-1]) and all(0 < len(part) <= size for part in parts)


@pytest.mark.parametrize("processes", [1, 2, 3, 8])
def test_auto_chunksize_is_the_smallest_size_giving_at_most_four_chunks_per_process(processes) -> None:
    for count in range(0, 300):
        size = auto_chunksize(count, processes)
        assert size >= 1
        assert len(chunk([[0]] * count, size)) <= 4 * processes
        if size > 1:  # one smaller would cut more chunks than Pool.map's rule allows
            assert len(chunk([[0]] * count, size - 1)) > 4 * processes


class Recorder:
    """Stands in for the progress SimpleQueue in-process."""

    def __init__(self) -> None:
        self.messages: list[pool.Progress] = []

    def put(self, message: pool.Progress) -> None:
        self.messages.append(message)


@pytest.mark.parametrize(("interval", "counts"), [(0.0, [0, 1, 1, 1, 1, 1]), (3600.0, [0, 5])])
def test_run_chunk_announces_itself_then_reports_what_it_did(monkeypatch, interval, counts) -> None:
    recorder = Recorder()
    monkeypatch.setattr(pool, "_progress", recorder)
    monkeypatch.setattr(pool, "_functions", catalog.TASKS)  # what the Pool's initializer sets
    monkeypatch.setattr(defaults, "PROGRESS_INTERVAL", interval)
    cpu0 = time.process_time()
    out = run_chunk("job-1", SQUARES, [[n] for n in range(5)])
    assert out["values"] == [0, 0, 1, 5, 14] and out["pid"] == os.getpid()
    assert 0 <= out["cpu_s"] <= time.process_time() - cpu0
    # first a count of 0 (this pid runs a chunk of job-1: the node learns it in case the pid dies), then
    # one message per interval, and what is left at the end: never more done than there were items
    assert recorder.messages == [("job-1", c, os.getpid()) for c in counts]


def test_run_chunk_outside_a_pool_reports_nothing_and_still_runs(monkeypatch) -> None:
    monkeypatch.setattr(pool, "_progress", None)
    monkeypatch.setattr(pool, "_functions", catalog.TASKS)
    assert run_chunk("job-1", SQUARES, [[3], [4]])["values"] == [5, 14]


class Done:
    """Collects the callbacks of one `BatchPool.submit` (they run in the Pool's result thread)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def on_done(self, result: dict[str, Any]) -> None:
        self.result = result
        self.event.set()

    def on_error(self, exc: BaseException) -> None:
        self.error = exc
        self.event.set()


@pytest.fixture
def batch_pool() -> Any:
    bp = BatchPool(fork, 2, "pool-test", None, None, catalog.TASKS)
    yield bp
    bp.close()


def _drain(bp: BatchPool) -> list[pool.Progress]:
    messages = []
    while not bp.progress.empty():
        messages.append(bp.progress.get())
    return messages


def test_a_batch_runs_in_the_pools_processes_and_reports_progress_per_chunk(batch_pool) -> None:
    done = Done()
    items = [[n] for n in range(40)]
    batch_pool.submit("job-7", SQUARES, items, 3, done.on_done, done.on_error)
    assert done.event.wait(60) and done.error is None
    assert done.result is not None
    assert done.result["values"] == [sum(i * i for i in range(n)) for n in range(40)]
    pids = set(batch_pool.pids())
    assert len(pids) == 2 and {int(p) for p in done.result["tasks_per_pid"]} <= pids
    assert sum(done.result["tasks_per_pid"].values()) == 40
    messages = _drain(batch_pool)  # each chunk put its messages before returning: all are there now
    assert {job for job, _, _ in messages} == {"job-7"} and {pid for _, _, pid in messages} <= pids
    assert sum(1 for _, count, _ in messages if count == 0) == math.ceil(40 / 3)  # one "started" per chunk
    assert sum(count for _, count, _ in messages) == 40  # every item reported done once


def test_chunksize_zero_means_pool_maps_own_rule(batch_pool) -> None:
    done = Done()
    batch_pool.submit("job-8", SQUARES, [[1]] * 50, 0, done.on_done, done.on_error)
    assert done.event.wait(60) and done.result is not None and done.result["count"] == 50
    started = [m for m in _drain(batch_pool) if m[1] == 0]
    assert len(started) == len(chunk([[1]] * 50, auto_chunksize(50, 2))) == 8  # size 7: 50 = 7 * 7 + 1


def test_an_empty_batch_is_done_at_once_and_a_failing_one_reports_its_error(batch_pool) -> None:
    done = Done()
    assert batch_pool.submit("job-9", SQUARES, [], 0, done.on_done, done.on_error) is None
    assert done.event.is_set() and done.result is not None and done.result["values"] == []
    failed = Done()
    batch_pool.submit("job-10", SQUARES, [[1], [-1]], 1, failed.on_done, failed.on_error)
    assert failed.event.wait(60) and failed.result is None
    assert isinstance(failed.error, ValueError) and "n must be >= 0" in str(failed.error)
    refused = Done()  # the Pool runs its allow-list only: a batch of batches is no task
    batch_pool.submit(
        "job-11", "tasks.batch.run_batch", [["tasks.cpu.trivial", [[1]]]], 1, refused.on_done, refused.on_error
    )
    assert refused.event.wait(60) and refused.result is None
    assert isinstance(refused.error, UnknownTask) and "tasks.batch.run_batch" in str(refused.error)


def test_close_reaps_every_process_of_the_pool() -> None:
    bp = BatchPool(fork, 2, "pool-test", None, None, catalog.TASKS)
    procs = [psutil.Process(pid) for pid in bp.pids()]
    assert len(procs) == 2
    bp.close()
    assert not any(p.is_running() for p in procs)


def _held(lock: Any) -> bool:
    if lock.acquire(block=False):
        lock.release()
        return False
    return True


def _stopped_to_the_end(p: Any) -> bool:
    """The Pool's own clean-up ran to its end (stop_pool abandons it if still stuck at its timeout)."""
    return not any(t.is_alive() for t in (p._worker_handler, p._task_handler, p._result_handler))


def test_stop_pool_frees_the_task_queue_lock_an_idle_killed_process_held() -> None:
    """An idle Pool process waits for work holding the task queue's read lock: kill -9 it and the dead
    hold the lock, and the Pool re-forks processes that queue up behind it: `terminate()` alone hangs."""
    p = fork.Pool(2)
    try:
        assert p.map(abs, [-1, -2, -3]) == [1, 2, 3]
        deadline = time.monotonic() + 20
        # idle: one process back in get() holding the read lock, and none still sending its result
        while not _held(p._inqueue._rlock) or _held(p._outqueue._wlock):
            assert time.monotonic() < deadline, "the Pool never went idle"
            time.sleep(0.01)
        for proc in list(p._pool):
            os.kill(proc.pid, signal.SIGKILL)
        time.sleep(0.3)  # the Pool notices and re-forks
        assert _held(p._inqueue._rlock), "the dead process's lock was released by someone"
    except BaseException:
        stop_pool(p)
        raise
    stop_pool(p, timeout=10)
    assert _stopped_to_the_end(p)


def _grab_and_wait(lock: Any, held: Any) -> None:
    lock.acquire()
    held.set()
    time.sleep(60)


def test_stop_pool_frees_the_result_queue_lock_of_a_process_killed_while_sending() -> None:
    p = fork.Pool(1)
    held = fork.Event()
    # stands in for a Pool process killed in the middle of sending a result (it holds the write lock)
    sender = fork.Process(target=_grab_and_wait, args=(p._outqueue._wlock, held))
    sender.start()
    try:
        assert held.wait(20)
        sender.kill()
        sender.join()
        assert _held(p._outqueue._wlock)
    except BaseException:
        stop_pool(p)
        raise
    stop_pool(p, timeout=10)
    assert _stopped_to_the_end(p)

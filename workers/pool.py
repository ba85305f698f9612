"""The node's warm Pool for batch jobs, and how its processes report per-task progress.

Progress travels over one `multiprocessing.SimpleQueue` shared by all Pool processes: many writers, one
reader (the node) is exactly what a Queue is for; a Pipe is one-to-one and Pool processes come and go,
so per-process Pipes would have to be re-plumbed whenever the Pool replaces a process.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.context import BaseContext
from multiprocessing.pool import AsyncResult, Pool
from multiprocessing.queues import SimpleQueue
from typing import Any

from tasks import batch
from tasks.batch import BatchResult, ChunkResult
from tasks.registry import AllowList
from workers import defaults, nodectx, proclife

Progress = tuple[str, int, int]
"""(job id, tasks done since the last report, pid); a count of 0 says the pid started a chunk of that job."""

_progress: SimpleQueue[Progress] | None = None
_functions = AllowList([])  # the node's allow-list, set in each Pool process


def _init(progress: SimpleQueue[Progress], node: str, url: str | None, lock: Any, functions: AllowList) -> None:
    global _progress, _functions
    proclife.child_signals()
    parent = os.getppid()  # the node (fork, spawn) or its fork server, which exits with the node
    if not proclife.die_with_parent(signal.SIGKILL, parent):  # nothing of a dead node's Pool work is kept
        os._exit(0)
    _progress, _functions = progress, functions
    nodectx.init(node, url, lock)
    proclife.watch_parent(parent, lambda: os._exit(0))  # where PR_SET_PDEATHSIG is not available


def run_chunk(job_id: str, task: str, items: list[list[Any]]) -> ChunkResult:
    """Run one chunk of a batch job in a Pool process, reporting progress at most every interval."""
    fn = _functions.raw(task)
    cpu0 = time.process_time()
    pid = os.getpid()
    if _progress is not None:
        _progress.put((job_id, 0, pid))  # the node learns which batch a process runs (if it dies)
    values = []
    pending = 0
    last = time.monotonic()
    for args in items:
        values.append(fn(*args))
        pending += 1
        now = time.monotonic()
        if _progress is not None and now - last >= defaults.PROGRESS_INTERVAL:
            _progress.put((job_id, pending, pid))
            pending, last = 0, now
    if _progress is not None and pending:
        _progress.put((job_id, pending, pid))
    return ChunkResult(values=values, pid=pid, cpu_s=time.process_time() - cpu0)


def chunk(items: list[list[Any]], size: int) -> list[list[list[Any]]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def auto_chunksize(count: int, processes: int) -> int:
    """Pool.map's own rule: about four chunks per process."""
    size, extra = divmod(count, processes * 4)
    return max(1, size + (1 if extra else 0))


class BatchPool:
    """A warm `Pool` of the node's processes plus the progress channel they write to."""

    def __init__(
        self, ctx: BaseContext, processes: int, node: str, url: str | None, lock: Any, functions: AllowList
    ) -> None:
        self.processes = processes
        self.progress: SimpleQueue[Progress] = ctx.SimpleQueue()
        initargs = (self.progress, node, url, lock, functions)
        self.pool: Pool = ctx.Pool(processes, initializer=_init, initargs=initargs)

    def pids(self) -> list[int]:
        return [p.pid for p in getattr(self.pool, "_pool", []) if p.pid]

    def submit(
        self,
        job_id: str,
        task: str,
        items: list[list[Any]],
        chunksize: int,
        on_done: Callable[[BatchResult], None],
        on_error: Callable[[BaseException], None],
    ) -> AsyncResult[list[ChunkResult]] | None:
        """Fan a batch out in chunks; `on_done` gets the merged batch result (Pool's result thread)."""
        started = time.time()
        if not items:  # Pool.starmap_async never calls back for an empty iterable
            on_done(batch.merge(task, [], started))
            return None
        size = chunksize if chunksize > 0 else auto_chunksize(len(items), self.processes)

        def done(parts: list[ChunkResult]) -> None:
            on_done(batch.merge(task, parts, started))

        return self.pool.starmap_async(
            run_chunk,
            [(job_id, task, part) for part in chunk(items, size)],
            chunksize=1,
            callback=done,
            error_callback=on_error,
        )

    def close(self) -> None:
        """Stop the Pool and reap every process (called once no slot can submit work any more)."""
        stop_pool(self.pool, timeout=5)
        self.progress.close()


def stop_pool(pool: Pool, timeout: float = 1.0) -> None:
    """Kill and reap a Pool's processes, then run its own clean-up, bounded in time.

    `Pool.terminate()` (and `with Pool`) can hang on a lock held by a dead Pool process: the task queue's
    read lock, which a process keeps while it waits for work, and the result queue's write lock, which it
    keeps while it sends a result. So the thread that re-forks processes is stopped first (else a fresh
    process takes the freed read lock and keeps it), the processes are killed, and both locks are freed.
    Its task thread also waits for a sentinel that never comes if the re-forking thread died (e.g. its fork
    server was killed): the Pool's threads are daemonic, so a clean-up still stuck after `timeout` seconds
    is abandoned.
    """
    handler = pool._worker_handler  # type: ignore[attr-defined]
    handler._state = "TERMINATE"  # multiprocessing.pool.TERMINATE: what terminate() does first
    pool._change_notifier.put(None)  # type: ignore[attr-defined]  # wakes it to see the new state
    handler.join(timeout=timeout)
    for proc in list(pool._pool):  # type: ignore[attr-defined]
        proc.kill()
        proc.join()
    # The task thread, told to stop by the re-forking one, writes a sentinel under the result queue's write
    # lock: give it a moment, so that lock is held by no live thread when it is freed.
    pool._task_handler.join(timeout=min(timeout, 0.5))  # type: ignore[attr-defined]
    for lock in (pool._inqueue._rlock, pool._outqueue._wlock):  # type: ignore[attr-defined]
        lock.acquire(block=False)  # free, or held by a dead process: either way, release it
        lock.release()
    cleanup = threading.Thread(target=pool.terminate, daemon=True, name="pool-terminate")
    cleanup.start()
    cleanup.join(timeout=timeout)
    for proc in list(pool._pool):  # type: ignore[attr-defined]
        proc.kill()  # any the Pool re-forked meanwhile
        proc.join()

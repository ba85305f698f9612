"""RQ's SimpleWorker with its per-job bookkeeping in four sequential round trips instead of about twenty.

Counted on the wire (`workers/netcost.py`), a stock SimpleWorker spends ~20 sequential Redis round trips
on a trivial job: its worker heartbeat is three unpipelined commands and runs three times per job, the
idle state is written twice, the suspension flag is read once, the execution record and the job's start
are two transactions, the job's end heartbeat one more, and success is WATCH + SMEMBERS + MULTI. Over a
network every round trip costs one RTT, so throughput falls with RTT times that count.

This worker writes exactly what RQ writes (same keys, registries, results, worker hash, so `rq info`,
rq-dashboard, `Job.latest_result()` and a stock `rq worker` all still agree with it) but in this order:

1. dequeue: RQ's own LMOVE, 2. fetch: RQ's own HGETALL of the job,
3. start: one pipeline = execution record + worker busy + heartbeat + job started + PERSIST (+ LREM),
4. end: one MULTI = result + status + registries + counters + execution cleanup + worker idle + heartbeat,
   which also reads the job's dependents atomically with its FINISHED status (RQ's WATCH loop runs only
   when there are dependents to move, which is rare).

The worker heartbeat and the suspension check run at most once per `housekeeping_interval` seconds
between jobs (RQ's worker TTL is minutes, so nothing expires meanwhile); `rq suspend` is seen within that
interval. Failures, retries, repeats and timeouts take RQ's own code paths unchanged.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.rate_limit import release_slot
from rq.registry import StartedJobRegistry
from rq.suspension import is_suspended
from rq.utils import now, utcformat
from rq.worker import SimpleWorker
from rq.worker.base import WorkerStatus


class LeanWorker(SimpleWorker):
    """SimpleWorker whose per-job Redis traffic is merged into pipelines (see the module docstring)."""

    housekeeping_interval = 1.0
    """Seconds between two worker heartbeats / suspension checks while jobs keep coming."""

    _beat_at = float("-inf")
    _suspension_checked_at = float("-inf")
    _recorded_state: str | None = None
    _ended_at_beat: Job | None = None

    # -- housekeeping: same writes, fewer of them ----------------------------------------------------
    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:  # part of a pipeline that is sent anyway: free
            super().heartbeat(timeout, pipeline=pipeline)
            self._beat_at = time.monotonic()
            return
        if timeout is None and time.monotonic() - self._beat_at < self.housekeeping_interval:
            return
        with self.connection.pipeline(transaction=False) as pipe:  # RQ sends its three commands one by one
            super().heartbeat(timeout, pipeline=pipe)
            pipe.execute()
        self._beat_at = time.monotonic()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is None and state == self._recorded_state:
            self._state = state
            return  # Redis already says so
        super().set_state(state, pipeline=pipeline)
        self._recorded_state = state

    def register_birth(self) -> None:
        super().register_birth()  # type: ignore[no-untyped-call]
        self._recorded_state = self._state
        self._beat_at = time.monotonic()

    def check_for_suspension(self, burst: bool) -> None:
        if time.monotonic() - self._suspension_checked_at < self.housekeeping_interval:
            return
        self._suspension_checked_at = time.monotonic()
        if is_suspended(self.connection, self):  # rare: RQ's own loop handles waiting and state
            super().check_for_suspension(burst)

    # -- one pipeline to start a job, one transaction to finish it -----------------------------------
    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self._start(job)
        self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)  # already recorded by the end transaction on success

    def _start(self, job: Job) -> Execution:
        """RQ's prepare_execution + prepare_job_execution, in one round trip."""
        heartbeat_ttl = self.get_heartbeat_ttl(job)
        with self.connection.pipeline() as pipe:
            execution = Execution.create(job, heartbeat_ttl, pipeline=pipe, worker_name=self.name)
            self.executions[execution.id] = execution
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            self.heartbeat(heartbeat_ttl, pipeline=pipe)
            job.heartbeat(now(), heartbeat_ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            pipe.persist(job.key)
            if len(self.queues) == 1:
                pipe.lrem(self.queues[0].intermediate_queue_key, 1, job.id)
            pipe.execute()
        job._lean_started = True  # type: ignore[attr-defined]
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        if getattr(job, "_lean_started", False):
            return  # done by _start in the same round trip as the execution record
        super().prepare_job_execution(job, remove_from_intermediate_queue)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        job.ended_at = now()
        job.last_heartbeat = job.ended_at
        self._ended_at_beat = job  # written by whichever transaction ends the job

    def _flush_end_beat(self, job: Job, pipeline: Any = None) -> None:
        if self._ended_at_beat is job and job.last_heartbeat is not None:
            (pipeline if pipeline is not None else self.connection).hset(
                job.key, "last_heartbeat", utcformat(job.last_heartbeat)
            )
        self._ended_at_beat = None

    def handle_job_failure(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        self._flush_end_beat(job)
        super().handle_job_failure(job, queue, *args, **kwargs)

    def handle_job_retry(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        self._flush_end_beat(job)
        super().handle_job_retry(job, queue, *args, **kwargs)

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        if job.repeats_left:  # repeating jobs: RQ's own path
            self._flush_end_beat(job)
            super().handle_job_success(job, queue, started_job_registry, execution)
            return
        assert job.started_at is not None and job.ended_at is not None
        result_ttl = job.get_result_ttl(self.default_result_ttl)
        with self.connection.pipeline() as pipe:  # MULTI/EXEC: what RQ commits, plus the reads it did before
            pipe.smembers(job.dependents_key)  # read atomically with the FINISHED status below
            self._flush_end_beat(job, pipe)
            self.increment_successful_job_count(pipeline=pipe)
            self.increment_total_working_time(job.ended_at - job.started_at, pipe)
            if result_ttl != 0:
                job._handle_success(
                    result_ttl,
                    pipeline=pipe,
                    worker_name=self.name,
                    execution_id=execution.id,
                    execution_started_at=execution.created_at,
                    execution_ended_at=job.ended_at,
                )
            job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)
            job._status = JobStatus.FINISHED
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            # Written here, but the worker stays "busy" in memory until the transaction has committed: a
            # SIGTERM meanwhile is then RQ's warm stop, not a StopRequested raised mid-transaction (which
            # would fail a job whose success is already stored).
            pipe.hset(self.key, "state", WorkerStatus.IDLE)
            self.heartbeat(pipeline=pipe)
            dependents = pipe.execute()[0]
        self._state = self._recorded_state = WorkerStatus.IDLE
        if dependents:  # a dependent registered before we finished: RQ moves it (it re-reads under WATCH)
            self._enqueue_dependents(job, queue)
        release_slot(job)
        self.log.info("Successfully completed job %s on worker %s", job.id, self.name)

    def _enqueue_dependents(self, job: Job, queue: Queue) -> None:
        with self.connection.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(job.dependents_key)  # type: ignore[no-untyped-call]
                    ready = queue.move_dependents_to_ready(job, pipeline=pipe)
                    if not pipe.explicit_transaction:
                        pipe.multi()
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        queue.enqueue_ready_jobs_by_queue(ready)

"""`mplab lab run --via rq`: run experiments on a worker node (enqueue, wait for the result) instead of here.

The caller's one Redis connection serves every experiment of a `lab run all`. Jobs go out and come back
through `workers.client` (its waiter polls with short commands, so a long experiment is waited for); while
waiting, the nodes' heartbeats are read once a second, so a lost node is reported instead of hanging.
"""

from __future__ import annotations

import contextlib
import time

import redis
from rq.job import Job, JobStatus

from tasks.registry import name_of
from workers import client, defaults
from workers.errors import ConfigError, JobFailed, JobTimeout, NodeUnavailable, RedisUnavailable
from workers.heartbeat import read_nodes
from workers.lab.jobs import run_experiment
from workers.lab.records import ExperimentResult, Params, Runner
from workers.settings import Settings

WAIT_TIMEOUT = defaults.JOB_TIMEOUT + 60
"""Seconds `--via rq` waits for one experiment's result (longer than the job timeout on the node)."""

POLL_S = 1
"""Seconds between two reads of the nodes' heartbeats while waiting for a result."""

NODE_GONE_S = 2 * defaults.STALE_AFTER
"""Seconds without any live node after which the wait for a result gives up."""


def check_runs_in_node(name: str) -> None:
    """ConfigError if experiment `name` cannot run on a worker node."""
    import workers.lab as lab

    exp = lab.get(name)
    if not exp.runs_in_node:
        raise ConfigError(f"experiment {name!r} cannot run on a worker node ({exp.node_note}); use --via local")


def _live(conn: redis.Redis) -> bool:
    return any(not node.stale for node in read_nodes(conn))


def node_runner(
    conn: redis.Redis,
    where: str,
    settings: Settings,
    timeout: float = WAIT_TIMEOUT,
    node_gone_s: float = NODE_GONE_S,
) -> Runner:
    """A function that runs one experiment on a worker node and returns its result, over the caller's
    connection `conn` to the Redis described by `where`; NodeUnavailable at once if no node is listening."""

    def check_nodes() -> None:
        if not _live(conn):
            raise NodeUnavailable(f"no worker node is listening on {where}: start one with `mplab worker`")

    check_nodes()
    queue_name = "default" if "default" in settings.queues else settings.queues[0]

    def run(name: str, params: Params) -> ExperimentResult:
        import workers.lab as lab

        check_runs_in_node(name)
        lab.get(name).parse_params(params)  # bad params fail here (exit 2), not on the node
        try:
            check_nodes()  # after a node died, the next experiments fail at once, not after a wait
            call = client.Call(
                name_of(run_experiment),
                [name, {k: str(v) for k, v in params.items()}, settings.start_method],
                description=f"lab experiment {name}",
            )
            return _submit_and_wait(conn, queue_name, call, timeout, node_gone_s)
        except client.LOST as exc:
            raise RedisUnavailable(f"lost Redis at {where} while running {name!r}: {exc}") from None

    return run


def _submit_and_wait(
    conn: redis.Redis, queue_name: str, call: client.Call, timeout: float, node_gone_s: float
) -> ExperimentResult:
    job = client.enqueue(conn, queue_name, call)
    try:
        value = _wait(conn, job, timeout, node_gone_s)
    except BaseException:
        with contextlib.suppress(Exception):  # nobody will read it: do not leave it for a node
            if job.get_status(refresh=True) == "queued":
                job.cancel()
        raise
    value["job_id"] = job.id
    return value


def _wait(conn: redis.Redis, job: Job, timeout: float, node_gone_s: float) -> ExperimentResult:
    """The job's return value; JobFailed, NodeUnavailable (every node went away) or JobTimeout otherwise."""
    last_live = next_check = time.monotonic()

    def watch_nodes(_done: int, _total: int) -> None:
        nonlocal last_live, next_check
        now = time.monotonic()
        if now < next_check:
            return
        next_check = now + POLL_S
        try:
            live = _live(conn)
        except client.LOST:
            return  # the waiter rides out a Redis blip (or reports it at its deadline)
        if live:
            last_live = now
        elif now - last_live > node_gone_s:
            raise NodeUnavailable(f"every worker node went silent while job {job.id} ({job.description}) waited")

    got = client.wait(conn, [job], timeout=timeout, on_progress=watch_nodes).jobs[0]
    if got.status == "timeout":
        raise JobTimeout(f"no result for job {job.id} within {timeout:.0f} s (is a node serving {job.origin!r}?)")
    if got.status != JobStatus.FINISHED.value:
        raise JobFailed(f"job {job.id} failed on the node: {got.reason or got.status}")
    value: ExperimentResult = got.value  # the JSON of a `workers.lab.jobs.run_experiment` return value
    if not isinstance(value, dict) or "claims" not in value:
        raise JobFailed(f"job {job.id} returned no experiment result: {str(got.value)[:200]!r}")
    return value

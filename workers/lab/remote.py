"""`mplab lab run --via rq`: enqueue experiments for a worker node and wait for their JSON results.

One Redis connection serves every experiment of a `lab run all`. The wait is a loop of short blocking
reads (each well under redis-py's socket timeout) up to a deadline longer than the job timeout, so a long
experiment is waited for and a lost node is reported instead of hanging. To migrate to the project's
submit/wait client once it exists: only `_wait` changes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from workers import defaults
from workers.errors import ConfigError, LabError, RedisUnavailable
from workers.settings import Settings

WAIT_TIMEOUT = defaults.JOB_TIMEOUT + 60
"""Seconds `--via rq` waits for one experiment's result (longer than the job timeout on the node)."""

POLL_S = 1
"""Seconds of one blocking read for the result (below redis-py's 5 s socket timeout)."""

NODE_GONE_S = 2 * defaults.STALE_AFTER
"""Seconds without any live node after which the wait for a result gives up."""

Runner = Callable[[str, dict[str, Any]], dict[str, Any]]


def check_runs_in_node(name: str) -> None:
    """ConfigError if experiment `name` cannot run on a worker node."""
    import workers.lab as lab

    exp = lab.get(name)
    if not exp.runs_in_node:
        raise ConfigError(f"experiment {name!r} cannot run on a worker node ({exp.node_note}); use --via local")


@contextlib.contextmanager
def remote_runner(
    settings: Settings, timeout: float = WAIT_TIMEOUT, node_gone_s: float = NODE_GONE_S
) -> Iterator[Runner]:
    """A function that runs one experiment on a worker node and returns its result dict; one connection."""
    import redis
    from rq import Queue

    from workers.heartbeat import read_nodes
    from workers.redis_server import connect, redis_for

    with redis_for(settings.redis_url, settings.state_dir) as (url, where):
        conn = connect(url)

        def check_nodes() -> None:
            if not [n for n in read_nodes(conn) if not n["stale"]]:
                raise LabError(f"no worker node is listening on {where}: start one with `mplab worker`")

        try:
            check_nodes()
            queue_name = "default" if "default" in settings.queues else settings.queues[0]
            from rq.serializers import JSONSerializer

            queue = Queue(queue_name, connection=conn, serializer=JSONSerializer)

            def run(name: str, params: dict[str, Any]) -> dict[str, Any]:
                import workers.lab as lab

                check_runs_in_node(name)
                lab.get(name).parse_params(params)  # bad params fail here (exit 2), not on the node
                try:
                    check_nodes()  # after a node died, the next experiments fail at once, not after a wait
                    result: dict[str, Any] = _submit_and_wait(queue, settings, name, params, timeout, node_gone_s)
                    return result
                except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                    raise RedisUnavailable(f"lost Redis at {where} while running {name!r}: {exc}") from None

            yield run
        finally:
            conn.close()


def _submit_and_wait(
    queue: Any, settings: Settings, name: str, params: dict[str, Any], timeout: float, node_gone_s: float
) -> Any:
    from workers.lab.jobs import run_experiment

    job = queue.enqueue(
        run_experiment,
        name,
        {k: str(v) for k, v in params.items()},
        settings.start_method,
        job_timeout=defaults.JOB_TIMEOUT,
        result_ttl=defaults.RESULT_TTL,
    )
    try:
        value: dict[str, Any] = _wait(job, timeout, node_gone_s)
    except BaseException:
        with contextlib.suppress(Exception):  # nobody will read it: do not leave it for a node
            if job.get_status(refresh=True) == "queued":
                job.cancel()
        raise
    value["job_id"] = job.id
    return value


def _wait(job: Any, timeout: float, node_gone_s: float) -> dict[str, Any]:
    """The job's return value; LabError if it failed, every node went away, or `timeout` passed."""
    from rq.results import Result

    from workers.heartbeat import read_nodes

    deadline = time.monotonic() + timeout
    last_live = time.monotonic()
    while time.monotonic() < deadline:
        result = job.latest_result(timeout=POLL_S)
        if result is None:
            if [n for n in read_nodes(job.connection) if not n["stale"]]:
                last_live = time.monotonic()
            elif time.monotonic() - last_live > node_gone_s:
                raise LabError(f"every worker node went silent while job {job.id} ({job.func_name}) waited")
            continue
        if result.type != Result.Type.SUCCESSFUL:
            last = (result.exc_string or "").strip().splitlines()
            raise LabError(f"job {job.id} failed on the node: {last[-1] if last else result.type.name}")
        return dict(result.return_value or {})
    raise LabError(f"no result for job {job.id} within {timeout:.0f} s (is a node serving {job.origin!r}?)")

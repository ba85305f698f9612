"""`mplab lab run --via rq`: enqueue an experiment for a worker node and wait for its JSON result."""

from __future__ import annotations

from typing import Any

from workers import defaults
from workers.errors import ConfigError, LabError
from workers.settings import Settings

WAIT_TIMEOUT = 300
"""Seconds `--via rq` waits for a node to return an experiment's result."""


def run_via_rq(settings: Settings, name: str, params: dict[str, Any], timeout: int = WAIT_TIMEOUT) -> dict[str, Any]:
    """Run experiment `name` on a worker node through RQ (JSON serializer) and return its result dict."""
    import workers.lab as lab

    exp = lab.get(name)
    if not exp.runs_in_node:
        raise ConfigError(f"experiment {name!r} cannot run on a worker node ({exp.node_note}); use --via local")
    exp.parse_params(params)  # bad params fail here (exit 2), not on the node
    from rq import Queue
    from rq.results import Result
    from rq.serializers import JSONSerializer

    from workers.heartbeat import read_nodes
    from workers.lab.jobs import run_experiment
    from workers.redis_server import connect, redis_for

    with redis_for(settings.redis_url, settings.state_dir) as (url, where):
        conn = connect(url)
        try:
            live = [n for n in read_nodes(conn) if not n["stale"]]
            if not live:
                raise LabError(f"no worker node is listening on {where}: start one with `mplab worker`")
            queue_name = "default" if "default" in settings.queues else settings.queues[0]
            queue = Queue(queue_name, connection=conn, serializer=JSONSerializer)
            job = queue.enqueue(
                run_experiment,
                name,
                {k: str(v) for k, v in params.items()},
                settings.start_method,
                job_timeout=defaults.JOB_TIMEOUT,
                result_ttl=defaults.RESULT_TTL,
            )
            result = job.latest_result(timeout=timeout)
            if result is None:
                raise LabError(f"no result for job {job.id} within {timeout} s (is a node serving {queue_name!r}?)")
            if result.type != Result.Type.SUCCESSFUL:
                last = (result.exc_string or "").strip().splitlines()
                raise LabError(f"job {job.id} failed on the node: {last[-1] if last else result.type.name}")
            value: dict[str, Any] = dict(result.return_value or {})
            value["job_id"] = job.id
            return value
        finally:
            conn.close()

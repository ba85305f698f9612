"""The RQ job function by which a worker node runs one lab experiment and returns its JSON result.

On the node's allow-list (`cli/node.py`): a node runs nothing it was not given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workers import nodectx

if TYPE_CHECKING:
    from workers.lab.records import ExperimentResult, Params, RanOn


def run_experiment(name: str, params: Params, start_method: str | None = None) -> ExperimentResult:
    """Run experiment `name` inside the node's slot process (which may create child processes)."""
    import workers.lab as lab
    from workers.errors import ConfigError
    from workers.settings import Settings

    exp = lab.get(name)
    if not exp.runs_in_node:
        raise ConfigError(f"experiment {name!r} does not run on a worker node: {exp.node_note}")
    # an experiment that measures over Redis uses the node's own (experiments never resolve one)
    settings = Settings(redis_url=nodectx.redis_url())
    settings = settings.with_(start_method=start_method) if start_method else settings
    result = lab.run(name, params, settings)
    result["ran_on"] = _where()
    return result


def _where() -> RanOn:
    import os
    import socket

    return {"node": nodectx.node_name(), "host": socket.gethostname(), "pid": os.getpid()}

"""The RQ job function by which a worker node runs one lab experiment and returns its JSON result.

On the node's allow-list (`cli/node.py`): a node runs nothing it was not given.
"""

from __future__ import annotations

from typing import Any


def run_experiment(name: str, params: dict[str, Any], start_method: str | None = None) -> dict[str, Any]:
    """Run experiment `name` inside the node's slot process (which may create child processes)."""
    import workers.lab as lab
    from workers.errors import ConfigError
    from workers.settings import Settings

    exp = lab.get(name)
    if not exp.runs_in_node:
        raise ConfigError(f"experiment {name!r} does not run on a worker node: {exp.node_note}")
    settings = Settings(start_method=start_method) if start_method else Settings()
    result = lab.run(name, params, settings)
    result["ran_on"] = _where()
    return result


def _where() -> dict[str, Any]:
    import os
    import socket

    from workers import nodectx

    return {"node": nodectx.node_name(), "host": socket.gethostname(), "pid": os.getpid()}

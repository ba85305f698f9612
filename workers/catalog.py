"""Imports every module that registers job functions, so a node's processes know the whole allow-list."""

from __future__ import annotations

import importlib

from tasks import registry

# Worker-side modules whose @registry.entrypoint functions nodes may run.
WORKER_JOB_MODULES: tuple[str, ...] = ("workers.lab.jobs", "workers.tickets.node_job")


def load() -> list[str]:
    """Import all registering modules; return the registered names."""
    for module in WORKER_JOB_MODULES:
        importlib.import_module(module)
    return registry.names()

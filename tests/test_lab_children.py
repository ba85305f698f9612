"""Experiment children start clean: default signal handlers whatever the runner installed, no CLI imported."""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
from typing import Any

import pytest

from workers.lab import probe
from workers.lab.children import experiment_children


def _ignore(signum: int, frame: Any) -> None:
    """Stands in for RQ's warm-stop handler in a node's slot: SIGTERM only sets a flag."""


def test_forked_child_gets_default_sigterm_back() -> None:
    previous = signal.signal(signal.SIGTERM, _ignore)
    ctx = mp.get_context("fork")
    try:
        with experiment_children():
            child = ctx.Process(target=probe.sleep_forever)
            child.start()
        child.terminate()
        child.join(10)
        alive = child.is_alive()
        if alive:
            child.kill()
            child.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not alive and child.exitcode == -signal.SIGTERM


def test_outside_an_experiment_fork_keeps_handlers() -> None:
    """The reset is scoped: a fork outside an experiment inherits the handler as usual (so it is ours)."""
    previous = signal.signal(signal.SIGTERM, _ignore)
    ctx = mp.get_context("fork")
    try:
        child = ctx.Process(target=probe.sleep_forever)
        child.start()
        child.terminate()
        child.join(0.5)
        survived = child.is_alive()
        child.kill()
        child.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert survived


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_child_imports_no_cli(method: str) -> None:
    import cli.main  # noqa: F401 - the parent has the whole CLI loaded, as `mplab` does

    if method not in mp.get_all_start_methods():
        pytest.skip(f"{method} not on {sys.platform}")
    ctx = mp.get_context(method)
    reader, writer = ctx.Pipe(duplex=False)
    with experiment_children():
        child = ctx.Process(target=probe.heavy_modules, args=(writer,))
        child.start()
        got = reader.recv() if reader.poll(60) else "no answer"
        child.join(30)
    from workers.lab.base import stop_mp_helpers

    stop_mp_helpers()
    assert got == []
    assert sys.modules["__main__"].__dict__.get("__file__") is not None or "__main__" in sys.modules

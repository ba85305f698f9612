"""Section 5: os.fork, the Process API, subclasses, start methods."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import workers.lab as lab
from tests.lab_tools import run, verdict
from workers.errors import Unsupported
from workers.settings import Settings


def test_fork_returns_and_copy_on_write(tmp_path: Path) -> None:
    r = run("fork", tmp_path, mb=16, repeats=3)
    assert verdict(r, "returns the child's PID in the parent") == "holds"
    assert verdict(r, "change to w") == "holds"
    uss = r["measurements"]["child_uss_mib"]
    assert uss["after_writes"] > uss["after_fork"]
    # fork() copies page tables of a process holding 16 MiB: tens of µs at least; a second would be broken
    assert 0.01 <= r["measurements"]["fork_call_ms_median"] <= 1000


def test_fork_refused_clearly_without_fork(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "fork")
    with pytest.raises(Unsupported, match="os.fork does not exist"):
        lab.run("fork", {}, Settings(state_dir=tmp_path))


def test_process_api_terminate_kill_exitcodes_and_argument_errors(tmp_path: Path) -> None:
    r = run("process-api", tmp_path, join_timeout=0.1)
    codes = r["measurements"]["exitcodes"]
    assert codes == {"returns": 0, "sys.exit(3)": 3, "raises": 1, "terminate": -15, "kill": -9}
    args = r["measurements"]["arguments"]
    assert "missing 1 required positional argument: 'age'" in args["missing age"]["message"]
    assert "unexpected keyword argument 'nam'" in args["misspelt 'nam' (no **kwargs)"]["message"]
    assert "multiple values for argument 'name'" in args["kwargs overriding args"]["message"]
    assert verdict(r, "terminate() forcibly") == "holds"  # the chapter's case: a child busy in its task
    assert verdict(r, "ignores SIGTERM") == "wrong"  # the edge case, labelled as such
    assert [c["scope"] for c in r["claims"] if "ignores SIGTERM" in c["claim"]] == ["edge"]


def test_subclass_results_stay_in_the_child(tmp_path: Path) -> None:
    r = run("subclass", tmp_path)
    assert r["measurements"]["child_results"]["DataProcessor"]["processed"] == [1, 4, 9, 16, 25]
    assert r["measurements"]["parent_view"]["DataProcessor"] == []
    assert verdict(r, "available in the parent") == "wrong"


@pytest.mark.slow
def test_start_methods_costs_and_main_guard(tmp_path: Path) -> None:
    r = run("start-methods", tmp_path, repeats=3)
    costs = r["measurements"]["start_join_ms"]
    assert {"fork", "spawn"} <= set(costs) <= {"fork", "forkserver", "spawn"}
    for method, c in costs.items():
        assert len(c["samples_s"]) == 3 and c["median_ms"] == round(statistics.median(c["samples_s"]) * 1000, 2)
        # a start+join is a fork (or a request to the fork server) and a wait at least; 30 s would be a hang
        assert 0.05 <= c["median_ms"] <= 30_000, (method, c)
    # spawn starts a fresh interpreter, which alone takes milliseconds; fork copies this one
    assert costs["spawn"]["median_ms"] >= 5 and costs["spawn"]["median_ms"] > costs["fork"]["median_ms"], costs
    guard = {(g["method"], g["guard"]): g for g in r["measurements"]["main_guard"]}
    assert guard[("fork", False)]["worker_ran"]
    assert not guard[("spawn", False)]["worker_ran"] and "RuntimeError" in guard[("spawn", False)]["error"]
    assert guard[("spawn", True)]["worker_ran"]
    # the default is the platform's, as a fresh interpreter reports it (nothing in this run may change it)
    fresh = subprocess.run(
        [sys.executable, "-c", "import multiprocessing as mp; print(mp.get_context().get_start_method())"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert r["measurements"]["default_start_method"] == fresh.stdout.strip()

"""Sections 3.2-3.3: identity, states, scheduling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.lab_tools import run, verdict


def test_identity_children_report_parent_pid(tmp_path: Path) -> None:
    r = run("identity", tmp_path, children=3)
    kids = r["measurements"]["children"]
    assert len({k["pid"] for k in kids}) == 3
    assert all(k["ppid"] == os.getpid() for k in kids)
    assert os.getpid() not in {k["pid"] for k in kids}


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_identity_creator_is_the_parent_whatever_the_start_method(tmp_path: Path, method: str) -> None:
    r = run("identity", tmp_path, start_method=method, children=2)
    assert all(k["ppid"] == os.getpid() for k in r["measurements"]["children"])
    assert verdict(r, "via os.getppid()") == "holds"
    if method == "forkserver":
        # the run's own method is still shown: its child's getppid() is the fork server
        assert r["measurements"]["start_method"] == "fork"
        assert r["measurements"]["run_method_child"]["ppid_is_creator"] is False
    else:
        assert r["measurements"]["start_method"] == method


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_states_psutil_sees_sleeping_running_stopped_zombie(tmp_path: Path, method: str) -> None:
    r = run("states", tmp_path, start_method=method, spin_s=0.3)
    m = r["measurements"]
    assert m["sampled_statuses"]["blocked"] and set(m["sampled_statuses"]["blocked"]) == {"sleeping"}
    assert all("running" in m["sampled_statuses"][f"busy-{i}"] for i in range(m["busy_children"]))
    assert m["stopped_status"] == "stopped"
    assert m["zombie_status"] == "zombie"
    assert verdict(r, "Running -> end") == "holds"  # it stopped running; the zombie is section 4.2's matter
    assert verdict(r, "every state a live process can be in") == "wrong"  # edge: 'stopped' exists too
    assert verdict(r, "Blocked and gets no CPU") == "holds"
    # each share is CPU seconds / wall seconds of one single-threaded child over its own spin: at most one
    # core each; the total is all their CPU seconds over the one window in which any of them spun: at most
    # the cores (a total above them would be a number past the physical limit)
    shares, busy = m["cpu_share_per_busy_child"], m["busy_children"]
    assert set(shares) == {f"busy-{i}" for i in range(busy)}
    assert all(0 < s <= 1.05 for s in shares.values()), shares
    assert 0.05 < m["cpu_share_total"] <= m["cores"] * 1.05, (m["cpu_share_total"], m["cores"])
    assert m["cpu_share_total"] == pytest.approx(m["busy_cpu_s"] / m["spin_window_s"], abs=0.01)
    assert m["spin_window_s"] >= 0.3 and m["busy_cpu_s"] <= m["cores"] * m["spin_window_s"] * 1.05 + 0.02


def test_scheduling_verdicts_and_rq_order(tmp_path: Path) -> None:
    r = run("scheduling", tmp_path)
    mix = r["measurements"]["default_mix"]
    assert mix["SJF"]["avg_waiting"] < mix["FCFS"]["avg_waiting"]
    assert verdict(r, "SJF favours short jobs") == "holds"
    order = r["measurements"]["rq_execution_order"]
    assert [o.split("-")[0] for o in order] == ["high", "high", "default", "default", "low", "low"]


def test_scheduling_leaves_signal_handlers_alone(tmp_path: Path) -> None:
    import signal

    before = signal.getsignal(signal.SIGTERM)
    run("scheduling", tmp_path)
    assert signal.getsignal(signal.SIGTERM) == before

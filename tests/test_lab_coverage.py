"""The experiments that measure what the chapter only states: writers, Lock cost, Pool reuse, imap memory,
zombies in the process table, SIGCHLD."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from tests.lab_tools import run, verdict


def test_queue_keeps_messages_whole_with_many_writers(tmp_path: Path) -> None:
    r = run("many-writers", tmp_path, writers=3, msgs=20, kib=128)
    q = r["measurements"]["queue"]
    assert q == {"sent": 60, "intact": 60, "corrupt": 0}
    assert r["measurements"]["pipe"]["intact"] < 60  # the same writers on one Pipe end garble the stream
    assert verdict(r, "Queue has a built-in lock") == "holds"


def test_lock_cost_counts_lost_updates(tmp_path: Path) -> None:
    r = run("lock-cost", tmp_path, processes=2, n=200_000, repeats=2)
    m = r["measurements"]
    assert m["final_counts"]["Lock"] == [m["expected"]] * 2
    assert all(f <= m["expected"] for f in m["final_counts"]["no lock"])
    assert verdict(r, "with a Lock every update counts") == "holds"


def test_pool_caps_concurrency_and_reuses_workers(tmp_path: Path) -> None:
    r = run("pool-reuse", tmp_path, processes=2, tasks=8, task_ms=30)
    m = r["measurements"]
    assert m["max_concurrent"] <= 2 and sum(m["tasks_per_pid"].values()) == 8
    assert {int(p) for p in m["tasks_per_pid"]} <= set(m["pool_workers"])
    assert verdict(r, "limits how many processes") == "holds" and verdict(r, "reused") == "holds"


def test_imap_peaks_lower_than_map(tmp_path: Path) -> None:
    r = run("imap-memory", tmp_path, items=10000, kib=1)
    peak = r["measurements"]["peak_mib"]
    assert peak["imap"] < peak["map"]
    assert verdict(r, "imap() computes") == "holds"


def test_zombies_hold_pids_and_are_gone_after(tmp_path: Path) -> None:
    r = run("many-zombies", tmp_path, zombies=30)
    assert r["measurements"]["zombies_seen"] == 30
    assert verdict(r, "occupy process-table entries") == "holds"
    expected = "not-measured" if os.geteuid() == 0 else "holds"
    assert verdict(r, "exhaust the process table") == expected
    me = psutil.Process()
    assert not [c for c in me.children(recursive=True) if c.status() == psutil.STATUS_ZOMBIE]


def test_sigchld_handler_reaps(tmp_path: Path) -> None:
    r = run("sigchld", tmp_path, children=4)
    cases = r["measurements"]["cases"]
    assert cases["handler"]["reaped"] == 4 and cases["handler"]["zombies_left"] == 0
    assert cases["default"]["zombies_left"] == 4 and cases["ignore"]["zombies_left"] == 0
    assert verdict(r, "sends SIGCHLD") == "holds"

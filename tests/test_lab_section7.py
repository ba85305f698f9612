"""Section 7: Pool methods, Pool vs Process, subprocess."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from tests.lab_tools import run, verdict


def test_pool_methods_order_and_blocking(tmp_path: Path) -> None:
    r = run("pool-methods", tmp_path, processes=2, task_ms=60)
    p = r["measurements"]["pool"]
    assert p["map"]["results"] == [1, 4, 9, 16, 25]
    assert p["map_async"]["returned_after_s"] < p["map_async"]["get_after_s"]
    assert [x for x, _ in p["imap"]["yields"]] == [1, 4, 9, 16]
    assert [x for x, _ in p["imap_unordered"]["yields"]][-1] == 1  # the slow first item comes last
    kinds = sorted(c[0] for c in p["apply_async"]["calls"])
    assert kinds == ["callback", "callback", "error_callback"]
    assert p["starmap"]["results"] == [8, 1024, 9]


@pytest.mark.slow
def test_pool_vs_process_measures_both_regimes(tmp_path: Path) -> None:
    r = run("pool-vs-process", tmp_path, batches=4, width=4, repeats=1, sweep_max=2, heavy_n=20_000)
    m = r["measurements"]
    for key in ("many_small_batches", "one_heavy_batch"):
        assert len(m[key]["process_s"]) == len(m[key]["pool_s"]) == 1  # one round each
        assert m[key]["process_s"][0] > 0 and m[key]["pool_s"][0] > 0
    assert all(c.get("speed") for c in r["claims"])
    assert [s["batches"] for s in m["sweep"]] == [1, 2]


@pytest.mark.slow
def test_subprocess_timeout_kills_the_tree(tmp_path: Path) -> None:
    r = run("subprocess", tmp_path, timeout_s=1.0)
    t = r["measurements"]["timeouts"]
    # plain run(timeout) leaves the grandchild alive (the experiment then ends it)
    assert t["run_timeout"]["grandchild_status"] in ("sleeping", "running")
    # the chapter's kill() + communicate() blocks: the surviving grandchild holds the stdout pipe
    assert t["chapter_popen"]["communicate_blocked"] is True
    assert t["chapter_popen"]["grandchild_status"] in ("sleeping", "running")
    assert t["killpg"]["timed_out"] and t["killpg"]["grandchild_status"] in ("zombie", "gone")
    for case in ("run_timeout", "chapter_popen", "killpg"):
        pid = t[case]["grandchild"]
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", case
    assert verdict(r, "on timeout, kill() ends the command") == "holds"  # the chapter's own code
    assert verdict(r, "also ends a command that started a child") == "wrong"  # edge: a grandchild
    assert r["measurements"]["timeouts"]["chapter_code"]["returncode"] == -9
    assert verdict(r, "with a child that flushes") == "holds"
    assert verdict(r, "bufsize=1 alone") == "wrong"
    assert verdict(r, "returncode by hand") == "holds"
    assert verdict(r, "nonexistent_command") == "wrong"
    assert verdict(r, "interactive interpreter") == "holds"

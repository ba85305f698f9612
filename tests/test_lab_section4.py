"""Section 4: orphan, zombie, daemon phenomena."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from tests.lab_tools import run, verdict


@pytest.mark.slow
def test_orphan_is_reparented_and_reaped(tmp_path: Path) -> None:
    r = run("orphan", tmp_path, wait_s=8.0)
    o = r["measurements"]["orphan"]
    assert o["new_ppid"] != o["old_ppid"]  # its parent died and someone adopted it
    assert o["reaped"] and not psutil.pid_exists(o["pid"])
    sub = r["measurements"]["subreaper_case"]
    assert sub["new_ppid"] == sub["me"]  # with a subreaper, it adopts instead of PID 1
    assert sub["reaped_status"] == 0
    # the kernel hands an orphan to the nearest subreaper among its ancestors (this process or one of its
    # parents), else to PID 1; the claim is 'holds' for PID 1 and 'outdated' for a subreaper
    me = psutil.Process()
    assert o["new_ppid"] in {1, me.pid, *(p.pid for p in me.parents())}, o
    assert verdict(r, "adopted by init") == ("holds" if o["new_ppid"] == 1 else "outdated")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_zombie_seen_then_gone(tmp_path: Path, method: str) -> None:
    r = run("zombie", tmp_path, start_method=method)
    m = r["measurements"]
    assert m["parentage_start_method"] == ("fork" if method == "forkserver" else method)
    for claim in ("not waited for is a zombie", "holds no memory", "join() (wait) removes the zombie"):
        assert verdict(r, claim) == "holds", claim
    assert m["status_before_join"] == "zombie"
    assert m["status_after_join"] == "gone"
    assert m["implicitly_reaped_by_start"] is True
    assert m["managed_chapter_setup"]["left"] == [] and m["managed_chapter_setup"]["codes"] == [0, 0, 0]
    assert m["managed_hanging_worker"]["left"] == []
    assert m["managed_hanging_worker"]["codes"][-1] == -15  # the hanging one was terminated


def test_daemon_terminated_with_parent_and_childless(tmp_path: Path) -> None:
    r = run("daemon", tmp_path, normal_s=0.2)
    m = r["measurements"]
    assert m["daemon_gone"] and m["normal_gone"]
    assert m["daemon_sigterm_after_code_end_s"] is not None
    # the exit handler terminates the daemon, then joins every child: SIGTERM comes between the code's end
    # and the process's exit (a bound of 30 s only separates exiting from hanging)
    assert 0 <= m["daemon_sigterm_after_code_end_s"] <= m["parent_exit_after_code_end_s"] < 30, m
    assert verdict(r, "may not create child processes") == "holds"
    assert any("daemonic processes are not allowed to have children" in c["evidence"] for c in r["claims"])
    assert verdict(r, "a normal child keeps running") == "holds"  # until its task is done (table 4.3.3)

"""Section 6: isolation, Queue, Pipe, Queue vs Pipe, the IPC table, the lock (tickets) entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_lab_helpers import run, verdict


def test_isolation_parent_still_sees_100(tmp_path: Path) -> None:
    r = run("isolation", tmp_path)
    assert r["measurements"]["parent_num"] == 100
    assert r["measurements"]["children_saw"] == [99]
    assert r["measurements"]["shared_value"] == 90


def test_queue_every_item_consumed_exactly_once(tmp_path: Path) -> None:
    r = run("queue", tmp_path, items=3, tasks=6, workers=2, task_ms=5)
    s = r["measurements"]["sentinel_scheme"]
    assert s["exactly_once"] and s["consumed"] == s["produced"] == 9
    d = r["measurements"]["distribution"]
    assert d["exactly_once"] and sum(d["per_worker"].values()) == 6
    chapter = r["measurements"]["chapter_scheme"]
    assert chapter["consumed"] + chapter["lost"] == chapter["produced"]


def test_pipe_eof_only_when_all_copies_closed(tmp_path: Path) -> None:
    r = run("pipe", tmp_path, writer_msgs=50, writer_kib=128)
    assert r["measurements"]["eof"] == {
        "parent_kept_copy": "blocked (no data, no EOF)",
        "parent_closed_copy": "EOFError",
    }
    assert r["measurements"]["ordered"] is True
    assert verdict(r, "no FIFO") == "wrong"


def test_queue_vs_pipe_numbers(tmp_path: Path) -> None:
    r = run("queue-vs-pipe", tmp_path, rtt_n=100, small_n=500, big_n=3, repeats=1)
    for kind in ("pipe", "queue"):
        row = r["measurements"]["results"][kind]
        assert row["rtt_us"] > 0 and row["msgs_per_s_100B"] > 0 and row["msgs_per_s_1MiB"] > 0


@pytest.mark.slow
@pytest.mark.integration
def test_ipc_table_measures_every_row(tmp_path: Path, redis_url: str) -> None:
    r = run("ipc-table", tmp_path, redis_url=redis_url, rtt_n=50, small_n=200, big_n=2, repeats=1)
    rows = {row["kind"]: row for row in r["measurements"]["table"]}
    assert set(rows) == {"pipe", "queue", "simplequeue", "value", "manager", "socket", "redis", "lock"}
    assert all(row["rtt_us"] > 0 for row in rows.values())
    assert verdict(r, "shared memory") == "wrong"


@pytest.mark.slow
def test_lock_entry_calls_the_ticket_engine(tmp_path: Path) -> None:
    r = run("lock", tmp_path, window=0.05)
    sales = r["measurements"].get("sales")
    if sales is None:  # the ticket issue has not landed in this build
        assert r["claims"][0]["verdict"] == "not-measured"
        return
    assert sales["lock"]["sold"] == 5
    assert sales["unsafe"]["sold"] + 0 >= 5

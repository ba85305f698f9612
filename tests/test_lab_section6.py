"""Section 6: isolation, Queue, Pipe, Queue vs Pipe, the IPC table, the lock (tickets) entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab_tools import run, verdict


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
    assert verdict(r, "receiver gets EOFError") == "holds"
    fifo = next(c for c in r["claims"] if "no FIFO" in c["claim"])
    assert "arrived exactly in the order sent" in fifo["evidence"]


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_pipe_eof_same_with_other_start_methods(tmp_path: Path, method: str) -> None:
    r = run("pipe", tmp_path, start_method=method, writer_msgs=10, writer_kib=128)
    assert r["measurements"]["eof"] == {
        "parent_kept_copy": "blocked (no data, no EOF)",
        "parent_closed_copy": "EOFError",
    }
    assert r["measurements"]["ordered"] is True


def test_queue_vs_pipe_numbers(tmp_path: Path) -> None:
    r = run("queue-vs-pipe", tmp_path, rtt_n=100, small_n=500, big_n=3, repeats=1)
    for kind in ("pipe", "queue"):
        row = r["measurements"]["results"][kind]
        # a round trip wakes two processes in turn: microseconds at least, and 100 ms would be broken
        assert 1 <= row["rtt_us"] <= 100_000, (kind, row)
        # each message is a pickle and a system call at least (no 10 M/s); 100/s would be broken
        assert 100 <= row["msgs_per_s_100B"] <= 10_000_000, (kind, row)
        # 1 MiB is copied into the kernel and out again: 50 GiB/s is beyond any memory bus; 1 MiB/s is broken
        assert 1 <= row["msgs_per_s_1MiB"] <= 50_000, (kind, row)
        assert row["msgs_per_s_1MiB"] < row["msgs_per_s_100B"]  # 10,000 times the bytes per message


@pytest.mark.slow
@pytest.mark.integration
def test_ipc_table_measures_every_row(tmp_path: Path, redis_url: str) -> None:
    r = run("ipc-table", tmp_path, redis_url=redis_url, rtt_n=50, small_n=200, big_n=2, repeats=1)
    rows = {row["kind"]: row for row in r["measurements"]["table"]}
    assert set(rows) == {"pipe", "queue", "simplequeue", "value", "manager", "socket", "redis", "lock"}
    # a message round trip wakes two processes in turn: microseconds at least; 100 ms would be broken
    assert all(1 <= row["rtt_us"] <= 100_000 for kind, row in rows.items() if kind != "lock"), rows
    # the lock row is one uncontended acquire+release in this process: no other process to wake
    assert 0.01 <= rows["lock"]["rtt_us"] < min(row["rtt_us"] for kind, row in rows.items() if kind != "lock")
    assert verdict(r, "shared memory") == "wrong"
    net = r["measurements"]["network_check"]
    assert net["local"] and net["echoed_intact"] == net["sent"]
    assert verdict(r, "Redis over TCP) carries messages") == "holds"
    # a Redis on this machine says nothing about other machines
    assert verdict(r, "across machines") == "not-measured"


@pytest.mark.slow
def test_lock_entry_calls_the_ticket_engine(tmp_path: Path) -> None:
    # a wide race window: every unsafe buyer reads the count before any of them writes it back
    r = run("lock", tmp_path, stock=5, buyers=7, window=0.3)
    sales = r["measurements"]["sales"]
    assert sales["unsafe"]["sold"] == 7 and sales["unsafe"]["oversold"] == 2
    assert sales["lock"]["sold"] == 5 and sales["lock"]["oversold"] == 0
    assert sales["lock"]["seats_sold_twice"] == 0
    assert verdict(r, "without a lock, concurrent buyers oversell") == "holds"
    assert verdict(r, "sells exactly the stock") == "holds"


def test_ipc_table_never_resolves_redis_itself(tmp_path: Path) -> None:
    # no URL given to the engine: it measures without the network row (it used to start an embedded server)
    r = run("ipc-table", tmp_path, rtt_n=10, small_n=10, big_n=1, repeats=1)
    assert any("no Redis for the network row: no Redis URL given" in e for e in r["events"]), r["events"]
    assert r["measurements"]["network_check"] is None
    assert "redis" not in {row["kind"] for row in r["measurements"]["table"]}

"""workers/heartbeat.py: what a beat writes (counts from the slots' RQ worker hashes, TTL, node set), what
the measurement of the process tree sees, and how `read_nodes` types, ages and prunes the hashes."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace

import psutil
import pytest

from workers import defaults
from workers.heartbeat import Heart, NodeFacts, node_key, read_nodes, worker_key

FACTS = NodeFacts(pool_size=3, start_method="fork", queues=("high", "default"), cores=2)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes started by a test, killed and reaped after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def _python(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_beat_sums_the_slots_rq_worker_hashes(fake_redis) -> None:
    fake_redis.hset(worker_key("n.slot1"), mapping={"state": "busy", "successful_job_count": 3, "failed_job_count": 1})
    fake_redis.hset(worker_key("n.slot2"), mapping={"state": "idle", "successful_job_count": 4})
    # slot3 has no RQ worker hash yet (still starting): it counts as idle with nothing done
    beat = Heart(fake_redis, "n", FACTS).beat(["n.slot1", "n.slot2", "n.slot3"], "running", [11, 12])
    assert (beat.slots_total, beat.slots_busy, beat.jobs_done, beat.jobs_failed) == (3, 1, 7, 1)
    stored = {k.decode(): v.decode() for k, v in fake_redis.hgetall(node_key("n")).items()}
    assert stored == beat.to_hash()  # what it returns is what it wrote
    assert json.loads(stored["slots"]) == ["n.slot1", "n.slot2", "n.slot3"]
    assert json.loads(stored["pool_pids"]) == [11, 12]
    assert stored["pool_size"] == "3" and stored["queues"] == "high,default" and stored["state"] == "running"
    assert stored["pid"] == str(os.getpid())


def test_a_beat_expires_unless_renewed_and_lists_the_node(fake_redis) -> None:
    Heart(fake_redis, "n", FACTS).beat([], "running")
    assert 0 < fake_redis.ttl(node_key("n")) <= defaults.HEARTBEAT_TTL
    assert fake_redis.smembers(defaults.NODES_SET) == {b"n"}
    assert defaults.HEARTBEAT_INTERVAL < defaults.HEARTBEAT_TTL  # a live node renews before its key expires


def test_the_tree_is_the_node_and_all_its_descendants(children) -> None:
    heart = Heart(None, "n", FACTS)  # type: ignore[arg-type]  # measuring needs no Redis
    alone = heart.measure()[3]
    # a child that runs a grandchild and waits for it: both belong to the node's tree
    children.append(
        _python("import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(60)'])")
    )
    child = psutil.Process(children[0].pid)
    deadline = time.monotonic() + 20
    while not child.children() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert heart.measure()[3] == alone + 2
    grandchild = child.children()[0]
    grandchild.kill()  # the child's run() returns, the child exits
    assert children[0].wait(timeout=20) == 0
    assert heart.measure()[3] == alone
    assert grandchild.pid not in heart.procs and child.pid not in heart.procs  # the dead are dropped


def test_cpu_percent_needs_the_baseline_that_the_heart_keeps(children) -> None:
    heart = Heart(None, "n", FACTS)  # type: ignore[arg-type]
    children.append(_python("while True: pass"))
    heart.measure()  # sets the baseline of every process in the tree
    kept = dict(heart.procs)
    time.sleep(0.5)
    assert Heart(None, "m", FACTS).measure()[0] == 0.0  # type: ignore[arg-type]  # no baseline: psutil says 0.0
    cpu = heart.measure()[0]
    assert all(heart.procs[pid] is proc for pid, proc in kept.items())  # the same Process objects: baselines kept
    assert cpu > 10.0, cpu  # a busy loop measured against its baseline (loose: the machine is shared)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PSS is Linux's")
def test_pss_counts_the_pages_a_forked_child_shares_once() -> None:
    heart = Heart(None, "n", FACTS)  # type: ignore[arg-type]
    ballast = bytearray(64 * 2**20)  # 64 MiB, touched: the child shares every page copy-on-write
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    ctx = mp.get_context("fork")
    ready, go = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold, args=(ready, go))
    child.start()
    try:
        assert ready.wait(20)
        _cpu, rss, pss, count = heart.measure()
    finally:
        go.set()
        child.join(20)
    assert count >= 2
    # RSS counts the shared 64 MiB in both processes; PSS gives each half of it
    assert rss - pss > 48 * 2**20, (rss >> 20, pss >> 20)
    del ballast


def _hold(ready, go) -> None:
    ready.set()
    go.wait(30)


def test_read_nodes_types_ages_and_marks_stale(fake_redis) -> None:
    written = Heart(fake_redis, "fresh", FACTS).beat(["fresh.slot1"], "running", [7])
    Heart(fake_redis, "old", FACTS).beat([], "stopping")
    fake_redis.hset(node_key("old"), "last_beat", str(time.time() - defaults.STALE_AFTER - 5))
    nodes = {n.name: n for n in read_nodes(fake_redis)}
    assert sorted(nodes) == ["fresh", "old"]
    fresh, old = nodes["fresh"], nodes["old"]
    assert replace(fresh, age_s=0.0) == written  # read back field for field, typed as written
    assert not fresh.stale and 0 <= fresh.age_s < defaults.STALE_AFTER
    assert old.stale and old.age_s > defaults.STALE_AFTER and old.state == "stopping"


def test_read_nodes_forgets_a_node_whose_heartbeat_expired(fake_redis) -> None:
    Heart(fake_redis, "gone", FACTS).beat([], "running")
    Heart(fake_redis, "alive", FACTS).beat([], "running")
    fake_redis.delete(node_key("gone"))  # what the TTL does to a node that stopped beating
    assert [n.name for n in read_nodes(fake_redis)] == ["alive"]
    assert fake_redis.smembers(defaults.NODES_SET) == {b"alive"}

"""`mplab compare` for real (real redis-server, real nodes): a full --quick run on a kept Redis, and its faults:
SIGTERM to its process group, kill -9 and the next run's clean-up, --nodes 0 with the user's nodes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from urllib.parse import urlsplit

import psutil
import pytest
import redis
from typer.testing import CliRunner

from cli.main import app
from tests.node_tools import REPO, mplab_cmd
from workers.compare import isolation
from workers.submit import submit_cpu

runner = CliRunner()

LOCAL_MODES = {"serial", "process per task", "pool chunksize=1", "pool auto", "subprocess per task"}
RQ_MODES = {"rq per-task", "rq batched"}


RQ_LOCKS = {b"rq:clean_groups"}
"""RQ's global maintenance lock: any worker that starts takes it, with a TTL; no run's own key."""


def _keys(url: str) -> set[bytes]:
    with redis.Redis.from_url(url) as client:
        locks = [k for k in RQ_LOCKS if client.exists(k)]
        assert all(client.ttl(k) > 0 for k in locks)
        return set(client.keys("*")) - RQ_LOCKS


def _start(url: str, *args: str) -> subprocess.Popen[str]:
    """compare --quick with the URL in its environment: forked children show their parent's argv."""
    return subprocess.Popen(
        mplab_cmd("compare", "--quick", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "80", "REDIS_URL": url},
    )


def _wait_measuring(url: str, proc: subprocess.Popen[str], timeout: float = 90) -> list[psutil.Process]:
    """Until the run's nodes are up and its RQ modes have jobs on its queue; its process tree then."""
    deadline = time.monotonic() + timeout
    with redis.Redis.from_url(url) as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            if any(k.startswith(b"rq:finished:mplab-compare-") for k in client.keys("rq:finished:*")):
                return psutil.Process(proc.pid).children(recursive=True)
            time.sleep(0.1)
    raise AssertionError("compare never got to its RQ modes")


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_quick_run_on_a_kept_redis(redis_url, tmp_path):
    """Every mode and workload, spreads and rounds, 80 columns piped, the password in no argv, nothing left."""
    before = _keys(redis_url)
    password = urlsplit(redis_url).password
    assert password
    out_json = tmp_path / "run.json"
    proc = _start(redis_url, "-o", str(out_json))
    seen: dict[int, str] = {}
    loads = [os.getloadavg()[0]]  # the machine's load average as this process reads it, while compare runs
    while proc.poll() is None:  # every process of its tree, sampled while it runs
        loads.append(os.getloadavg()[0])
        try:
            for p in psutil.Process(proc.pid).children(recursive=True):
                try:
                    seen.setdefault(p.pid, " ".join(p.cmdline()))
                except psutil.Error:
                    pass
        except psutil.Error:
            break
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    loads.append(os.getloadavg()[0])
    assert proc.returncode == 0, stderr
    assert sum("worker" in c for c in seen.values()) >= 2 and sum("rq worker" in c for c in seen.values()) >= 2
    assert not [c for c in seen.values() if password in c], "the Redis password is in a command line"

    lines = stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in stdout
    assert lines[0].startswith("mplab compare: quick run") and lines[2] == "Answer"

    data = json.loads(out_json.read_text())
    header = data["header"]
    assert header["nodes_started"] >= 1 and header["rq_slots"] == header["nodes_started"] * header["node_pool"]
    # the kernel's load average changes every 5 s: compare read one of the values this test saw meanwhile
    for key in ("load_start", "load_end"):
        assert min(loads) - 0.01 <= header[key] <= max(loads) + 0.01, (key, header[key], min(loads), max(loads))
    # each idle node is a Python interpreter with rq and redis loaded (and its Pool): tens of MiB, not GiB
    rss, pss = header["node_idle_rss_mb"], header["node_idle_pss_mb"]
    assert len(rss) == len(pss) == header["nodes_started"], header
    assert all(10 <= r <= 2000 and 0 < p <= r + 0.1 for r, p in zip(rss, pss, strict=True)), (rss, pss)
    assert {n["name"] for n in header["nodes"] if n["used"]} == {
        f"compare-{header['run_id']}-{i + 1}" for i in range(header["nodes_started"])
    }
    assert header["queue"] == f"mplab-compare-{header['run_id']}"
    rows = data["rows"]
    for size in {r["size"] for r in rows if r["workload"] == "cpu"}:
        at = [r for r in rows if r["workload"] == "cpu" and r["size"] == size]
        assert {r["mode"] for r in at} == LOCAL_MODES | RQ_MODES
        assert min(r["rounds"] for r in at) >= (3 if size == data["reference_size"] else 2)
    for r in rows:
        assert len(r["speedup"]["samples"]) == r["rounds"] and r["speedup"]["low"] <= r["speedup"]["median"]
        assert r["valid"] or r["invalid_reason"]
    trivial = {r["mode"] for r in rows if r["workload"] == "trivial"}
    assert {"stock SimpleWorkers", "stock rq workers (forking)"} | RQ_MODES <= trivial
    assert {t["verdict"] for t in data["targets"]} <= {"met", "not met", "too close to call", "invalid"}
    assert {r["channel"] for r in data["ipc"]} == {"Pipe", "Queue", "Redis list over TCP"}
    assert _keys(redis_url) == before, _keys(redis_url) - before


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "signum, to_group",
    [(signal.SIGTERM, True), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["sigterm-group", "sigterm-main-process", "ctrl-c"],
)
def test_a_signal_stops_everything_and_leaves_nothing(redis_url, signum, to_group):
    """SIGTERM to the whole group (Pool children die holding their queue's lock) or to compare alone, and
    Ctrl-C (SIGINT to the group, as a terminal sends it)."""
    before = _keys(redis_url)
    proc = _start(redis_url)
    tree = _wait_measuring(redis_url, proc)
    t0 = time.monotonic()
    if to_group:
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    code = proc.wait(timeout=60)  # broken: Pool.__exit__ deadlocked for minutes
    took = time.monotonic() - t0
    print(f"compare stopped {took:.2f} s after {signal.Signals(signum).name}")
    _, stderr = proc.communicate()
    assert code == 130 and "Traceback" not in stderr, stderr
    _, alive = psutil.wait_procs(tree, timeout=5)
    assert not alive, alive
    assert took < 10, took  # the goal is <= 2 s; this bound only separates stopping from hanging
    assert _keys(redis_url) == before, _keys(redis_url) - before


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(180)
def test_a_killed_run_is_cleaned_up_by_the_next(redis_url):
    before = _keys(redis_url)
    proc = _start(redis_url)
    tree = _wait_measuring(redis_url, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    _, alive = psutil.wait_procs(tree, timeout=15)  # nodes die with their parent (PDEATHSIG)
    assert not alive, alive
    with redis.Redis.from_url(redis_url) as client:
        assert client.hlen(isolation.RUNS) == 1
        assert isolation.clean_leftovers(client)  # what the next run does first
    assert _keys(redis_url) == before, _keys(redis_url) - before


@pytest.mark.integration
def test_leftovers_of_a_live_run_are_left_alone(real_redis):
    record = isolation.RunRecord.new()  # this very process: alive
    foot = isolation.Footprint(real_redis, record)
    foot.add_queue(record.queue())
    real_redis.rpush(f"rq:queue:{record.queue()}", "job-1")
    assert isolation.clean_leftovers(real_redis) == []
    assert real_redis.exists(f"rq:queue:{record.queue()}")
    foot.remove()
    assert real_redis.keys("*") == []


@pytest.mark.integration
def test_nodes_zero_without_running_nodes_is_a_clear_error(redis_url):
    result = runner.invoke(app, ["--redis-url", redis_url, "compare", "--quick", "--nodes", "0"])
    assert result.exit_code == 2, result.output
    assert "--nodes 0 needs running worker nodes serving queue 'default'" in result.stderr


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(120)
def test_nodes_zero_uses_exactly_the_named_nodes(redis_url, nodes):
    nodes.start("n1", pool=1)
    nodes.start("n2", pool=1)
    cmd = ["--redis-url", redis_url, "compare", "--quick", "--nodes", "0"]
    result = runner.invoke(app, [*cmd, "--node-names", "n1"])
    assert result.exit_code == 2 and "node 'n2' also serves queue 'default'" in result.stderr, result.stderr
    result = runner.invoke(app, [*cmd, "--node-names", "n1,n3"])
    assert result.exit_code == 2 and "no live node named 'n3'" in result.stderr, result.stderr
    with redis.Redis.from_url(redis_url) as client:  # someone else's work: two jobs run, two wait
        submit_cpu(client, "default", tasks=4, size=10_000_000, batch=1)
    result = runner.invoke(app, cmd)
    assert result.exit_code == 2 and "queue 'default' has 2 job(s) waiting" in result.stderr, result.stderr


@pytest.mark.integration
def test_on_a_shared_queue_only_the_runs_own_jobs_are_removed(real_redis):
    """--nodes 0: the user's queue stays, with the user's jobs; compare's jobs go, wherever they are."""
    theirs = submit_cpu(real_redis, "default", tasks=2, size=10, batch=1)
    ours = submit_cpu(real_redis, "default", tasks=3, size=10, batch=1)
    record = isolation.RunRecord.new()
    record.shared_queue = "default"
    foot = isolation.Footprint(real_redis, record)
    foot.save()
    foot.add_jobs([j.id for j in ours])
    real_redis.zadd("rq:wip:default", {f"{ours[0].id}:exec1": 1.0, f"{theirs[0].id}:exec2": 1.0})
    foot.remove()
    assert [j.decode() for j in real_redis.lrange("rq:queue:default", 0, -1)] == [j.id for j in theirs]
    assert real_redis.zrange("rq:wip:default", 0, -1) == [f"{theirs[0].id}:exec2".encode()]
    assert all(not real_redis.exists(f"rq:job:{j.id}") for j in ours)
    assert all(real_redis.exists(f"rq:job:{j.id}") for j in theirs)
    assert not real_redis.hlen(isolation.RUNS) and not real_redis.keys("mplab:compare:*")

"""`mplab status [--watch] [--json]` against a real Redis and real nodes; the live view in a real pty."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from dataclasses import replace

import psutil
import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.node_tools import REPO, Nodes, mplab_cmd
from tests.redis_tools import RestartableRedis
from workers import client, defaults
from workers.heartbeat import Heart, Heartbeat, NodeFacts, live_nodes, read_nodes

runner = CliRunner()
pytestmark = pytest.mark.integration
COLOUR = re.compile(r"\x1b\[[0-9;]*m")
MOVE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")  # cursor moves and erases: Live redraws in place


def status_json(url: str) -> dict:
    out = runner.invoke(app, ["--redis-url", url, "status", "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_an_empty_redis_says_so(redis_url):
    out = runner.invoke(app, ["--redis-url", redis_url, "status"])
    assert out.exit_code == 0, out.output
    assert "this Redis is empty" in out.stdout and "no nodes" in out.stdout
    assert "updated at" in out.stdout


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_status_json_is_typed_and_shows_each_slots_job_and_batch_progress(redis_url, real_redis, nodes: Nodes):
    nodes.start("watch-n1", pool=2)
    single = client.enqueue(real_redis, "default", client.Call("tasks.faults.nap", [6.0]))
    [batch] = client.enqueue_many(real_redis, "default", client.task_calls("tasks.faults.nap", [[1.0]] * 6, 6))
    seen_single = seen_progress = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (seen_single and seen_progress):
        info = status_json(redis_url)
        [node] = info["nodes"]
        for slot in node["slots"]:
            if slot["job_id"] == single.id:
                seen_single = slot
            if slot["job_id"] == batch.id and slot["progress"] and slot["progress"]["done"] > 0:
                seen_progress = slot
        time.sleep(0.2)
    assert seen_single and seen_single["function"] == "tasks.faults.nap" and seen_single["state"] == "busy"
    assert isinstance(seen_single["elapsed_s"], float) and isinstance(seen_single["pid"], int)
    assert seen_progress and seen_progress["function"] == "batch of 6 x tasks.faults.nap"
    assert seen_progress["progress"]["total"] == 6
    here = _tree_rss(node["pid"])  # psutil's own reading of the node's tree, a heartbeat interval or so later
    assert isinstance(node["rss_bytes"], int) and isinstance(node["pss_bytes"], int)
    assert here / 2 <= node["rss_bytes"] <= here * 2, (node["rss_bytes"], here)
    assert 0 < node["pss_bytes"] <= node["rss_bytes"]  # PSS splits shared pages, RSS counts them in full
    assert node["processes"] >= 1 + node["pool_size"]  # the node and its Pool at least
    assert isinstance(node["age_s"], float) and isinstance(node["cpu_percent"], float)
    assert node["cores"] == os.cpu_count()
    assert 0 <= node["cpu_percent"] <= node["cores"] * 100 * 1.1  # a tree cannot use more than every core
    assert node["slots_total"] == node["pool_size"] == 2 and len(node["pool_pids"]) == 2
    assert node["queues"] == ["high", "default", "low"] and isinstance(node["cores"], int)
    assert all(isinstance(pid, int) for pid in node["pool_pids"])
    default = next(q for q in info["queues"] if q["queue"] == "default")
    assert all(isinstance(v, int) for k, v in default.items() if k != "queue")
    client.wait(real_redis, [single, batch], timeout=60).check()


def _tree_rss(pid: int) -> int:
    """RSS summed over a process and its descendants, as psutil reads it now."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a child may end between listing and reading
            total += proc.memory_info().rss
    return total


def _spawn_in_pty(args: list[str], columns: int = 80) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~termios.ECHO  # the terminal does not echo ^C into the screen we measure
    termios.tcsetattr(slave, termios.TCSANOW, attrs)

    def controlling_tty() -> None:  # the pty becomes the child's terminal, so ^C there is a real SIGINT
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")} | {"TERM": "xterm-256color"}
    proc = subprocess.Popen(
        args, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env, preexec_fn=controlling_tty
    )
    os.close(slave)
    return proc, master


def _read(master: int, seconds: float) -> str:
    chunks, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunks.append(os.read(master, 65536))
            except OSError:
                break
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_watch_renders_at_80_columns_in_a_pty_and_stops_on_ctrl_c(redis_url, real_redis, nodes: Nodes):
    nodes.start("watch-n2", pool=1)
    job = client.enqueue(real_redis, "default", client.Call("tasks.faults.nap", [5.0]))
    proc, master = _spawn_in_pty(mplab_cmd("--redis-url", redis_url, "status", "--watch", "-n", "0.3"))
    try:
        screen = ""
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and (screen.count("updated at") < 3 or job.id not in screen):
            screen += _read(master, 0.5)
        os.write(master, b"\x03")  # Ctrl-C, typed on the terminal
        proc.wait(timeout=15)
        screen += _read(master, 0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = MOVE.sub("\n", COLOUR.sub("", screen))
    assert text.count("updated at") >= 3, text[-2000:]  # refreshed, not printed once
    assert job.id in text and "node watch-n2" in text and "Pool pids:" in text
    lines = [line for line in text.split("\n") if line.strip()]
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert proc.returncode == 130 and "Traceback" not in text
    client.wait(real_redis, [job], timeout=30).check()


@contextlib.contextmanager
def piped_watch(url: str) -> Iterator[subprocess.Popen[bytes]]:
    """`mplab status --watch --json` with stdout piped (not a terminal); killed on the way out if still running."""
    proc = subprocess.Popen(
        mplab_cmd("--redis-url", url, "status", "--watch", "-n", "0.2", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def next_docs(proc: subprocess.Popen[bytes], count: int) -> list[dict]:
    assert proc.stdout is not None
    return [json.loads(proc.stdout.readline()) for _ in range(count)]


def interrupt(proc: subprocess.Popen[bytes]) -> bytes:
    """Ctrl-C (SIGINT) to the watch; what it wrote on stderr."""
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=15)[1]


@pytest.mark.timeout(60)
def test_watch_piped_prints_one_json_document_per_refresh_and_stops_on_sigint(redis_url):
    with piped_watch(redis_url) as proc:
        docs = next_docs(proc, 3)
        err = interrupt(proc)
    assert all(isinstance(doc["queues"], list) and "updated_at" in doc for doc in docs)
    assert proc.returncode == 130 and b"Traceback" not in err


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_watch_goes_on_through_a_redis_restart(tmp_path):
    server = RestartableRedis(tmp_path).start()
    try:
        with piped_watch(server.url) as proc:
            before = next_docs(proc, 2)
            server.kill()
            time.sleep(1.5)
            server.start()
            after = next_docs(proc, 2)  # snapshots again, same process
            err = interrupt(proc)
    finally:
        server.kill()
    assert before and after[-1]["updated_at"] > before[-1]["updated_at"]
    assert b"Redis unreachable" in err and b"Traceback" not in err
    assert proc.returncode == 130


def test_heartbeat_fields_are_read_tolerantly():
    now = time.time()
    row = {"pid": "12", "cpu_percent": "3.5", "rss_bytes": "lots", "pool_pids": "[1, 2]", "slots": "{not json",
           "queues": "high, default,", "last_beat": str(now - 1)}  # fmt: skip
    beat = Heartbeat.from_hash("n1", row, now)
    assert beat.pid == 12 and beat.cpu_percent == 3.5 and beat.rss_bytes == 0  # unreadable: its default
    assert beat.pool_pids == (1, 2) and beat.slots == () and beat.queues == ("high", "default")
    assert beat.host == "?" and beat.pool_size == 0  # not written at all: unknown
    assert 0.9 <= beat.age_s <= 1.1 and not beat.stale
    assert Heartbeat.from_hash("n1", row, now + defaults.STALE_AFTER + 1).stale


def test_a_heartbeat_reads_back_as_it_was_written(fake_redis):
    facts = NodeFacts(pool_size=2, start_method="spawn", queues=("high", "default"), cores=4)
    written = Heart(fake_redis, "n1", facts).beat(["n1.s0", "n1.s1"], "running", [7, 8])
    [read] = read_nodes(fake_redis)
    assert read == replace(written, age_s=read.age_s) and 0 <= read.age_s < defaults.STALE_AFTER
    assert read.queues == ("high", "default") and read.slots == ("n1.s0", "n1.s1") and read.pool_pids == (7, 8)
    assert read.pid == os.getpid() and read.rss_bytes > 0 and read.processes >= 1
    assert read.serves("default") and not read.serves("low")
    assert [n.name for n in live_nodes(fake_redis, "high")] == ["n1"] and not live_nodes(fake_redis, "low")

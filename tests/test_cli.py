"""The CLI contract: help that explains itself, one-line errors with non-zero exit codes, embedded Redis."""

from __future__ import annotations

import json
import os
import subprocess

import psutil
import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import mplab_cmd
from workers import redis_server

runner = CliRunner()


def one_line_error(result, code: int, needle: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0], lines[0]


def test_every_command_has_help():
    for args in (
        [], ["submit"], ["submit", "cpu"], ["status"], ["result"], ["worker"], ["compare"], ["redis"], ["redis", "up"],
    ):  # fmt: skip
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.stdout


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["submit", "cpu", "--size", "-1"], 2, "--size must be >= 0"),
        (["submit", "cpu", "--tasks", "0"], 2, "--tasks must be >= 1"),
        (["submit", "cpu", "--batch", "0"], 2, "--batch must be >= 1"),
        (["submit", "cpu", "--queue", "urgent"], 2, "unknown queue 'urgent'"),
        (["worker", "--pool", "0"], 2, "pool size must be >= 1"),
        (["--start-method", "vfork", "status"], 2, "start method must be one of"),
        (["--redis-url", "http://x", "status"], 2, "Redis URL must start with"),
        (["submit", "cpu"], 2, "needs a Redis that outlives this command"),
        (["worker"], 2, "a worker node needs a Redis that outlives this command"),
        (["tickets", "submit", "--mode", "atomic"], 2, "needs a Redis that outlives this command"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args, code, needle):
    one_line_error(runner.invoke(app, args), code, needle)


def test_redis_down_is_one_line_error():
    url = "redis://127.0.0.1:1/0"
    for args in (["status"], ["submit", "cpu"], ["result", "abc"], ["worker", "--burst"]):
        one_line_error(
            runner.invoke(app, ["--redis-url", url, *args]), 1, "cannot reach Redis at redis://127.0.0.1:1/0"
        )


def test_redis_down_through_the_real_console_script():
    proc = subprocess.run(mplab_cmd("--redis-url", "redis://127.0.0.1:1/0", "status"), capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: cannot reach Redis")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, needle",
    [
        (("submit", "cpu", "--tasks", "abc"), "Invalid value for '--tasks'"),
        (("tickets", "submit"), "Missing option '--mode'"),
        (("nosuch",), "No such command 'nosuch'"),
    ],
)
def test_usage_errors_are_one_line_through_the_console_script(args, needle):
    proc = subprocess.run(mplab_cmd(*args), capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.integration
def test_unknown_job_id_is_one_line(redis_url):
    one_line_error(runner.invoke(app, ["--redis-url", redis_url, "result", "nope"]), 1, "no job with id 'nope'")


@pytest.mark.integration
def test_embedded_redis_is_real_and_stopped_after_the_command():
    before = {p.pid for p in psutil.process_iter() if p.name().startswith("redis-server")}
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["redis"].startswith("embedded redis-server from ")
    after = {p.pid for p in psutil.process_iter() if p.name().startswith("redis-server")}
    assert after == before  # it was stopped again


@pytest.mark.integration
def test_embedded_server_dies_with_its_parent():
    server, proc = redis_server.start_server()
    try:
        assert redis_server.connect(server.url).info("server")["redis_version"]
    finally:
        proc.terminate()
        proc.wait()


@pytest.mark.integration
def test_redis_up_down_shares_one_server_between_commands(tmp_path):
    state = ["--state-dir", str(tmp_path / "s")]
    up = runner.invoke(app, [*state, "redis", "up", "--json"])
    assert up.exit_code == 0, up.output
    pid = json.loads(up.stdout)["pid"]
    try:
        assert psutil.Process(pid).is_running()
        again = runner.invoke(app, [*state, "redis", "up", "--json"])
        assert json.loads(again.stdout) | {"started": True} == json.loads(up.stdout)  # same server reused
        status = runner.invoke(app, [*state, "status", "--json"])
        assert "mplab redis up server" in json.loads(status.stdout)["redis"]
    finally:
        down = runner.invoke(app, [*state, "redis", "down"])
    assert down.exit_code == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    one_line_error(runner.invoke(app, [*state, "redis", "down"]), 1, "no `mplab redis up` server is running")


def test_a_stale_state_file_never_points_at_another_process(tmp_path):
    # after a reboot the recorded pid may belong to anything: here, this very test process
    state = tmp_path / "s"
    state.mkdir()
    fake = redis_server.RedisServer("redis://:x@127.0.0.1:1/0", os.getpid(), "/bin/redis-server", "PATH", 1, "/tmp/x")
    redis_server.state_file(state).write_text(json.dumps(fake.info()))
    assert redis_server.read_state(state) is None
    assert redis_server.down(state) is None  # and nothing was signalled: we are still here
    assert not redis_server.state_file(state).exists()

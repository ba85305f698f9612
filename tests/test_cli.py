"""The CLI contract: help that explains itself, one-line errors with non-zero exit codes, embedded Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil
import pytest
from typer.testing import CliRunner

from cli.main import app, main
from tests.chaos_tools import assert_gone
from tests.node_tools import REPO, mplab_cmd
from workers import redis_server

runner = CliRunner()


def one_line_error(result, code: int, needle: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0], lines[0]


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_main(args, monkeypatch, capsys) -> Ran:
    """The real console-script entry point in-process (usage errors are rendered by main(), not click)."""
    monkeypatch.setattr(sys, "argv", ["mplab", *args])
    saved = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        signal.signal(signal.SIGTERM, saved)
    out = capsys.readouterr()
    return Ran(int(exited.value.code or 0), out.out, out.err)


def test_every_command_has_help():
    for args in (
        [], ["submit"], ["submit", "cpu"], ["status"], ["result"], ["worker"], ["compare"], ["redis"], ["redis", "up"],
        ["jobs"], ["cancel"], ["requeue"], ["purge"], ["redis", "url"], ["redis", "env"], ["redis", "down"],
    ):  # fmt: skip
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.stdout


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["submit", "cpu", "--size", "-1"], 2, "Invalid value for '--size'"),
        (["submit", "cpu", "--size", str(10**12)], 2, "Invalid value for '--size'"),
        (["submit", "cpu", "--tasks", "0"], 2, "Invalid value for '--tasks'"),
        (["submit", "cpu", "--tasks", "10000000"], 2, "Invalid value for '--tasks'"),
        (["submit", "cpu", "--batch", "0"], 2, "Invalid value for '--batch'"),
        (["submit", "cpu", "--batch", "100001"], 2, "Invalid value for '--batch'"),
        (["submit", "cpu", "--retry", "11"], 2, "Invalid value for '--retry'"),
        (["submit", "cpu", "--retry-interval", "-1"], 2, "Invalid value for '--retry-interval'"),
        (["submit", "cpu", "--job-timeout", "0"], 2, "Invalid value for '--job-timeout'"),
        (["submit", "cpu", "--result-ttl", "99999999999"], 2, "Invalid value for '--result-ttl'"),
        (["submit", "cpu", "--wait", "--timeout", "nan"], 2, "Invalid value for '--timeout'"),
        (["submit", "cpu", "--wait", "--timeout", "inf"], 2, "Invalid value for '--timeout'"),
        (["submit", "cpu", "--queue", "a b"], 2, "bad queue name 'a b'"),
        (["status", "-n", "nan"], 2, "Invalid value for '--interval'"),
        (["status", "-n", "0"], 2, "Invalid value for '--interval'"),
        (["jobs", "--status", "bogus"], 2, "Invalid value for '--status'"),
        (["jobs", "--limit", "0"], 2, "Invalid value for '--limit'"),
        (["jobs", "--queue", "../x"], 2, "bad queue name"),
        (["result", "../../etc/passwd"], 2, "bad job id"),
        (["cancel"], 2, "give at least one job id"),
        (["requeue"], 2, "give job ids or --failed"),
        (["requeue", "abc", "--failed"], 2, "give job ids or --failed"),
        (["purge", "a/b"], 2, "bad queue name"),
        (["worker", "--pool", "0"], 2, "pool size must be >= 1"),
        (["--start-method", "vfork", "status"], 2, "Invalid value for '--start-method'"),
        (["--redis-url", "http://x", "status"], 2, "Redis URL must start with"),
        (["submit", "cpu"], 2, "needs a Redis that outlives this command"),
        (["submit", "cpu", "--wait"], 2, "`submit --wait` needs a Redis that outlives this command"),
        (["status"], 2, "`status` needs a Redis that outlives this command"),
        (["jobs"], 2, "`jobs` needs a Redis that outlives this command"),
        (["result", "abc"], 2, "`result` needs a Redis that outlives this command"),
        (["redis", "url"], 1, "no `mplab redis up` server is running"),
        (["worker"], 2, "a worker node needs a Redis that outlives this command"),
        (["tickets", "submit", "--mode", "atomic"], 2, "needs a Redis that outlives this command"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args, code, needle, monkeypatch, capsys):
    one_line_error(run_main(args, monkeypatch, capsys), code, needle)


def test_redis_down_is_one_line_error():
    url = "redis://127.0.0.1:1/0"
    for args in (["status"], ["submit", "cpu"], ["result", "abc"], ["worker", "--burst"], ["jobs"], ["purge", "q"]):
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
def test_embedded_redis_is_real_and_stopped_after_the_block(tmp_path):
    with redis_server.redis_for(None, tmp_path / "none") as (url, where):
        assert where.startswith("embedded redis-server from ")
        pid = int(where.split("pid ")[1].split(",")[0])
        assert psutil.Process(pid).name().startswith("redis-server")
        assert redis_server.connect(url).ping()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_version_and_exit_codes_in_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("mplab ")
    helptext = runner.invoke(app, ["--help"]).stdout
    assert "Exit codes" in helptext and "130 interrupted" in helptext and "--install-completion" in helptext


@pytest.mark.integration
def test_embedded_server_dies_with_its_parent_and_keeps_its_password_off_the_command_line():
    code = (
        "import time\nfrom workers import redis_server\nserver, proc = redis_server.start_server()\n"
        "print(server.pid, server.url, ' '.join(proc.args), sep='\\n', flush=True)\ntime.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        pid, url, argv = (parent.stdout.readline().strip() for _ in range(3))
        server = psutil.Process(int(pid))
        password = urlsplit(url).password
        assert password and redis_server.connect(url).ping()
        assert password not in argv and password not in " ".join(server.cmdline())
    finally:
        parent.kill()  # kill -9: no clean-up code of the parent runs
        parent.wait()
        parent.stdout.close()
    assert_gone([server])  # the embedded redis-server does not outlive the process that started it


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
        assert down.exit_code == 0, down.output
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


@pytest.mark.integration
def test_redis_url_and_env_give_the_full_url_for_other_tools(tmp_path):
    state = ["--state-dir", str(tmp_path / "s")]
    up = runner.invoke(app, [*state, "redis", "up", "--json"])
    assert up.exit_code == 0, up.output
    try:
        url = runner.invoke(app, [*state, "redis", "url"]).stdout.strip()
        assert "***" not in url and redis_server.connect(url).ping()  # the password is really in it
        env = runner.invoke(app, [*state, "redis", "env"]).stdout.strip()
        assert env in (f"export REDIS_URL={url}", f"export REDIS_URL='{url}'")
    finally:
        assert runner.invoke(app, [*state, "redis", "down"]).exit_code == 0


@pytest.mark.integration
def test_redis_up_with_an_unwritable_state_dir_leaves_no_server(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    one_line_error(runner.invoke(app, ["--state-dir", str(blocker / "s"), "redis", "up"]), 2, "cannot write the state")
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before  # no redis-server was left

"""The chapter's file-store sale with real buyer processes: unsafe oversells every run, lock never does."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.node_tools import mplab_cmd
from workers.errors import ConfigError
from workers.settings import Settings
from workers.tickets import local, manage
from workers.tickets.records import SaleSpec
from workers.tickets.store_file import FileStore

runner = CliRunner()


@pytest.fixture
def settings(tmp_path):
    return Settings(state_dir=tmp_path / "state")


def no_redis():
    """`manage`'s Redis opener for file sales: a file sale never needs one."""
    raise AssertionError("a file sale asked for Redis")


@pytest.mark.parametrize("trial", range(3))
def test_unsafe_sells_seven_of_five_tickets_on_every_run(settings, trial):
    result = local.run(settings, SaleSpec(stock=5, buyers=7, mode="unsafe"))
    s = result["summary"]
    assert s["sold"] == 7  # counted from 7 ledger rows, not inferred
    assert s["oversold"] == 2
    assert s["seats_sold_twice"] >= 1  # 7 sales, at most 5 seats
    assert s["lost_updates"] > 0  # the counter dropped by less than the ledger sold
    assert s["failed_buyers"] == 0 and s["missing_buyers"] == 0
    assert len(s["sold_per_pid"]) == 7  # seven real processes
    assert result["crashed_buyers"] == []


@pytest.mark.parametrize("trial", range(2))
def test_lock_sells_exactly_five(settings, trial):
    result = local.run(settings, SaleSpec(stock=5, buyers=7, mode="lock"))
    s = result["summary"]
    assert s["sold"] == 5 and s["oversold"] == 0 and s["seats_sold_twice"] == 0
    assert sorted(row["seat"] for row in result["outcomes"] if "seat" in row) == [1, 2, 3, 4, 5]
    assert s["final_counter"] == 0
    assert s["failed_buyers"] == 2
    assert s["correct"]


def test_the_ticket_file_path_is_configurable_and_holds_the_chapters_format(settings, tmp_path):
    path = tmp_path / "ticket.json"
    result = local.run(settings, SaleSpec(stock=3, buyers=4, mode="lock", window=0.01), path=path)
    assert json.loads(path.read_text()) == {"count": 0}
    rows = [json.loads(line) for line in (tmp_path / "ticket.json.ledger.jsonl").read_text().splitlines()]
    assert sum("seat" in r for r in rows) == 3
    assert result["summary"]["sold"] == 3


def test_report_reset_delete_of_a_file_sale(settings):
    sale = local.run(settings, SaleSpec(stock=2, buyers=3, mode="lock", window=0.0))
    again = manage.report(settings, sale["sale_id"], no_redis)
    assert again["summary"]["sold"] == 2 and again["summary"]["failed_buyers"] == 1
    manage.reset(settings, sale["sale_id"], no_redis)
    after = manage.report(settings, sale["sale_id"], no_redis)
    assert after["summary"]["sold"] == 0 and after["summary"]["final_counter"] == 2
    manage.delete(settings, sale["sale_id"], no_redis)
    gone = runner.invoke(app, ["--state-dir", str(settings.state_dir), "tickets", "report", sale["sale_id"]])
    assert gone.exit_code == 1
    assert gone.stderr.strip() == (
        f"error: no ticket sale {sale['sale_id']!r} on this host, and no Redis (--redis-url / `mplab redis up`) to "
        "look in"
    )


def test_cli_local_prints_buyers_and_summary(tmp_path):
    result = runner.invoke(app, ["--state-dir", str(tmp_path), "tickets", "local", "--mode", "unsafe"])
    assert result.exit_code == 0, result.output
    for name in ("Alice", "Grace", "oversold", "seats sold twice", "7 sold of 5"):
        assert name in result.stdout


def test_cli_local_json_then_report_json(tmp_path):
    result = runner.invoke(app, ["--state-dir", str(tmp_path), "tickets", "local", "--mode", "lock", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["summary"]["sold"] == 5 and data["machine"]["start_method"]
    report = runner.invoke(app, ["--state-dir", str(tmp_path), "tickets", "report", data["sale_id"], "--json"])
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["summary"]["sold"] == 5


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["local", "--mode", "yolo"], 2, "unknown mode 'yolo'"),
        (["local", "--mode", "redis-lock", "--window", "1.5"], 2, "lock timeout (1.0 s) must exceed"),
        (["submit", "--mode", "unsafe"], 2, "unknown mode 'unsafe'"),
        (["submit", "--mode", "atomic", "--wait"], 2, "`tickets submit --wait` needs a Redis that outlives"),
        (["report", "no-such-sale"], 1, "no-such-sale"),
        (["report", "../../etc"], 1, "no ticket sale"),
        (["delete", "nope"], 1, "nope"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path, args, code, message):
    result = runner.invoke(app, ["--state-dir", str(tmp_path), "tickets", *args])
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("stock", -1, "stock must be between 0 and 1000000, got -1"),
        ("buyers", 0, "buyers must be between 1 and 1000, got 0"),
        ("buyers", 1001, "buyers must be between 1 and 1000, got 1001"),
        ("window", -1.0, "window must be between 0 and 60 seconds"),
        ("window", float("nan"), "got nan"),
        ("window", float("inf"), "got inf"),
        ("lock_timeout", float("nan"), "got nan"),
        ("per_job", 0, "per-job must be between 1 and 1000"),
        ("party", -1, "party must be between 0 and 1000"),
        ("mode", "yolo", "unknown mode 'yolo'"),
    ],
)
def test_a_sale_spec_out_of_range_is_refused_before_anything_runs(settings, field, value, message):
    """Library callers (the lab, compare) get the same finite ranges as the CLI's options."""
    spec = dataclasses.replace(SaleSpec(mode="unsafe"), **{field: value})
    with pytest.raises(ConfigError) as err:
        local.run(settings, spec)
    assert message in str(err.value)
    assert not (settings.state_dir / "sales").exists()  # nothing was created


def test_a_file_in_a_missing_directory_is_refused_and_no_directory_is_created(tmp_path):
    missing = tmp_path / "nonexistent" / "d"
    proc = subprocess.run(
        mplab_cmd("--state-dir", str(tmp_path / "state"), "tickets", "local", "--mode", "unsafe", "--file",
                  str(missing / "t.json")),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "is not a directory" in proc.stderr
    assert not (tmp_path / "nonexistent").exists()
    assert list((tmp_path / "state").glob("sales/*")) == []


def _lines_at_80_columns(*args: str) -> list[str]:
    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.run(mplab_cmd(*args), capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_the_sale_tables_fit_80_columns_piped_one_line_per_buyer(tmp_path):
    """Piped (not a terminal) with COLUMNS=80: every buyer row is one line, no number or label cut."""
    state = str(tmp_path / "state")
    lines = _lines_at_80_columns("--state-dir", state, "tickets", "local", "--mode", "unsafe", "--buyers", "12",
                                 "--window", "0.05")  # fmt: skip
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert not any("…" in line for line in lines), "\n".join(lines)
    for name in ("Alice", "Grace", "buyer-8", "buyer-12"):
        (row,) = [line for line in lines if line.split() and line.split()[0] == name]
        assert " local " in row and "seat " in row, row  # node, pid, read and outcome on the buyer's line
    for label in ("lost updates (sold - counter drop)", "missing buyers (no outcome)", "seats sold twice"):
        (row,) = [line for line in lines if label in line]
        assert row.split()[-1].isdigit(), row  # its count is on the same line
    sale_id = lines[0].split()[1].rstrip(":")
    report = _lines_at_80_columns("--state-dir", state, "tickets", "report", sale_id, "--rows")
    assert all(len(line) <= 80 for line in report) and not any("…" in line for line in report)
    assert sum(1 for line in report if line.split() and line.split()[0].startswith(("buyer-", "Alice"))) == 6


def test_a_long_window_is_valid_for_modes_without_a_redis_lock(tmp_path):
    result = runner.invoke(
        app, ["--state-dir", str(tmp_path), "tickets", "local", "--mode", "unsafe", "--window", "1.5", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["sold"] == 7


def test_a_relative_file_names_the_same_file_for_reset_and_delete_from_another_directory(
    settings, tmp_path, monkeypatch
):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    monkeypatch.chdir(a)
    sale = local.run(settings, SaleSpec(stock=2, buyers=3, mode="lock", window=0.0), path=Path("ticket.json"))
    sale_id = sale["sale_id"]
    assert Path(sale["path"]) == (a / "ticket.json").resolve()

    monkeypatch.chdir(b)  # b has its own ticket.json and ledger, which are none of the sale's business
    (b / "ticket.json").write_text('{"count": 99}')
    (b / "ticket.json.ledger.jsonl").write_text("someone else's rows\n")
    assert manage.report(settings, sale_id, no_redis)["summary"]["sold"] == 2
    manage.reset(settings, sale_id, no_redis)
    assert json.loads((a / "ticket.json").read_text()) == {"count": 2}
    assert manage.report(settings, sale_id, no_redis)["summary"]["sold"] == 0
    manage.delete(settings, sale_id, no_redis)
    assert not (a / "ticket.json").exists() and not (a / "ticket.json.ledger.jsonl").exists()
    assert (b / "ticket.json").read_text() == '{"count": 99}'
    assert (b / "ticket.json.ledger.jsonl").read_text() == "someone else's rows\n"


@pytest.mark.parametrize(
    "replace, message",
    [
        ("ticket", 'no longer holds a {"count": ...} ticket file'),
        ("ledger", "is not this sale's ledger"),
    ],
)
def test_reset_and_delete_refuse_files_that_are_no_longer_the_sales(settings, tmp_path, replace, message):
    path = tmp_path / "ticket.json"
    sale = local.run(settings, SaleSpec(stock=2, buyers=2, mode="lock", window=0.0), path=path)
    target = path if replace == "ticket" else FileStore.at(path).ledger
    target.write_text("my notes, not a ticket sale\n")
    before = {p: p.read_text() for p in (path, FileStore.at(path).ledger)}
    for op in ("reset", "delete"):
        result = runner.invoke(app, ["--state-dir", str(settings.state_dir), "tickets", op, sale["sale_id"]])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], result.stderr
        with pytest.raises(ConfigError):
            getattr(manage, op)(settings, sale["sale_id"], no_redis)
    assert {p: p.read_text() for p in before} == before


def test_a_ticket_file_that_cannot_be_created_leaves_no_sale_behind(settings, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory would have to be")
    with pytest.raises(ConfigError, match="is not a directory"):
        local.run(settings, SaleSpec(stock=2, buyers=2, mode="lock", window=0.0), path=blocker / "ticket.json")
    assert list((settings.state_dir / "sales").glob("*")) == []
    assert blocker.read_text() == "a file where a directory would have to be"


@pytest.mark.parametrize("trouble", ["broken start barrier", "ticket.json is not JSON", "ticket.json has no count"])
def test_a_failing_buyer_records_why_and_exits_1_without_a_traceback(tmp_path, capfd, trouble):
    ctx = mp.get_context("fork")
    store = FileStore.at(tmp_path / "ticket.json")
    store.create(5)
    barrier = ctx.Barrier(1)
    if trouble == "broken start barrier":
        barrier = ctx.Barrier(2)
        barrier.abort()
        reason = "BrokenBarrierError"
    elif trouble == "ticket.json is not JSON":
        store.path.write_text("{not json")
        reason = "JSONDecodeError"
    else:
        store.path.write_text('{"tickets": 5}')
        reason = "ValueError"
    args = (str(store.path), "s-fail", SaleSpec(mode="unsafe", stock=5, window=0.0), "Alice", barrier, ctx.Lock())
    proc = ctx.Process(target=local.file_buyer, args=args)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 1
    sales, failures = store.rows()
    assert sales == [] and [(row["buyer"], row["reason"]) for row in failures] == [("Alice", reason)]
    assert "Traceback" not in capfd.readouterr().err


def _buyers_of(proc: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in proc.children():
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


@pytest.mark.slow
def test_ctrl_c_during_a_local_sale_ends_every_buyer_without_a_traceback(tmp_path):
    """SIGINT to the whole process group (as a terminal sends it): the parent reaps its buyers, which ignore it."""
    state = tmp_path / "state"
    proc = subprocess.Popen(
        mplab_cmd("--state-dir", str(state), "tickets", "local", "--mode", "unsafe", "--window", "60"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        me = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        while len(buyers := _buyers_of(me)) < 7:
            assert time.monotonic() < deadline and proc.poll() is None, "the buyers never started"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _, alive = psutil.wait_procs(buyers, timeout=20)
    assert not alive, alive
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    (ledger,) = state.glob("sales/*/ticket.json.ledger.jsonl")
    rows = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert all(row.get("reason") != "KeyboardInterrupt" for row in rows)

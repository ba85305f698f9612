"""The chapter's file-store sale with real buyer processes: unsafe oversells every run, lock never does."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli import main
from cli import tickets as tickets_cli
from workers.settings import Settings
from workers.tickets import engine

runner = CliRunner()


def root_app():
    """The `mplab` app with the tickets sub-app (registered here if the lead has not yet)."""
    if "tickets" not in {group.name for group in main.app.registered_groups}:
        main.app.add_typer(tickets_cli.app, name="tickets")
    return main.app


@pytest.fixture
def settings(tmp_path):
    return Settings(state_dir=tmp_path / "state")


@pytest.mark.parametrize("trial", range(3))
def test_unsafe_sells_seven_of_five_tickets_on_every_run(settings, trial):
    result = engine.run_local(settings, stock=5, buyers=7, mode="unsafe")
    s = result["summary"]
    assert s["sold"] == 7  # counted from 7 ledger rows, not inferred
    assert s["oversold"] == 2
    assert s["final_counter"] == 4  # every buyer read 5 and wrote 4
    assert s["seats_sold_twice_detail"] == {"1": 7}
    assert s["failed_buyers"] == 0 and s["missing_buyers"] == 0
    assert len(s["sold_per_pid"]) == 7  # seven real processes
    assert result["crashed_buyers"] == []


@pytest.mark.parametrize("trial", range(2))
def test_lock_sells_exactly_five(settings, trial):
    result = engine.run_local(settings, stock=5, buyers=7, mode="lock")
    s = result["summary"]
    assert s["sold"] == 5 and s["oversold"] == 0 and s["seats_sold_twice"] == 0
    assert sorted(row["seat"] for row in result["outcomes"] if "seat" in row) == [1, 2, 3, 4, 5]
    assert s["final_counter"] == 0
    assert s["failed_buyers"] == 2
    assert s["correct"]


def test_the_ticket_file_path_is_configurable_and_holds_the_chapters_format(settings, tmp_path):
    path = tmp_path / "ticket.json"
    result = engine.run_local(settings, stock=3, buyers=4, mode="lock", window=0.01, path=path)
    assert json.loads(path.read_text()) == {"count": 0}
    rows = [json.loads(line) for line in (tmp_path / "ticket.json.ledger.jsonl").read_text().splitlines()]
    assert sum("seat" in r for r in rows) == 3
    assert result["summary"]["sold"] == 3


def test_report_reset_delete_of_a_file_sale(settings):
    sale = engine.run_local(settings, stock=2, buyers=3, mode="lock", window=0.0)
    again = engine.report(settings, sale["sale_id"])
    assert again["summary"]["sold"] == 2 and again["summary"]["failed_buyers"] == 1
    engine.reset(settings, sale["sale_id"])
    after = engine.report(settings, sale["sale_id"])
    assert after["summary"]["sold"] == 0 and after["summary"]["final_counter"] == 2
    engine.delete(settings, sale["sale_id"])
    from workers.errors import NotFound

    with pytest.raises(NotFound):
        engine.report(settings, sale["sale_id"])


def test_cli_local_prints_buyers_and_summary(tmp_path):
    result = runner.invoke(root_app(), ["--state-dir", str(tmp_path), "tickets", "local", "--mode", "unsafe"])
    assert result.exit_code == 0, result.output
    for name in ("Alice", "Grace", "oversold", "seats sold twice", "7 sold of 5"):
        assert name in result.stdout


def test_cli_local_json_then_report_json(tmp_path):
    app = root_app()
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
        (["local", "--mode", "unsafe", "--stock", "-1"], 2, "stock must be >= 0"),
        (["local", "--mode", "unsafe", "--buyers", "0"], 2, "buyers must be >= 1"),
        (["local", "--mode", "yolo"], 2, "unknown mode 'yolo'"),
        (["local", "--mode", "unsafe", "--window", "-1"], 2, "window must be >= 0"),
        (["submit", "--mode", "atomic", "--per-job", "0"], 2, "per-job must be >= 1"),
        (["submit", "--mode", "atomic", "--buyers", "0"], 2, "buyers must be >= 1"),
        (["submit", "--mode", "atomic", "--stock", "-5"], 2, "stock must be >= 0"),
        (["submit", "--mode", "unsafe"], 2, "unknown mode 'unsafe'"),
        (["report", "no-such-sale"], 1, "no-such-sale"),
        (["report", "../../etc"], 1, "no ticket sale"),
        (["delete", "nope"], 1, "nope"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path, args, code, message):
    result = runner.invoke(root_app(), ["--state-dir", str(tmp_path), "tickets", *args])
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output

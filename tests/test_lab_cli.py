"""`mplab lab` through its Typer app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.lab import app

runner = CliRunner()


def test_list_shows_every_section() -> None:
    res = runner.invoke(app, ["list", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    sections = {r["section"] for r in rows}
    assert {"3.2", "4.1", "4.2", "4.3", "5.1", "6.5", "6.6", "7.1.3", "7.2"} <= sections
    human = runner.invoke(app, ["list"])
    assert human.exit_code == 0 and "orphan" in human.output


def test_run_json_and_text() -> None:
    res = runner.invoke(app, ["run", "identity", "--json", "-p", "children=2"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["name"] == "identity" and len(data["measurements"]["children"]) == 2
    text = runner.invoke(app, ["run", "isolation"])
    assert text.exit_code == 0 and "What happened" in text.output and "holds" in text.output


def test_unknown_experiment_and_bad_params() -> None:
    res = runner.invoke(app, ["run", "nope"])
    assert res.exit_code == 2 and "no experiment 'nope'" in res.output
    assert runner.invoke(app, ["run", "identity", "-p", "children=x"]).exit_code == 2
    assert runner.invoke(app, ["run", "identity", "-p", "kids=1"]).exit_code == 2
    assert runner.invoke(app, ["run", "identity", "-p", "novalue"]).exit_code == 2
    assert runner.invoke(app, ["run", "identity", "--via", "carrier-pigeon"]).exit_code == 2


@pytest.mark.slow
@pytest.mark.integration
def test_via_rq_without_node_says_so(redis_url: str) -> None:
    from cli.main import app as root

    res = runner.invoke(root, ["--redis-url", redis_url, "lab", "run", "identity", "--via", "rq"])
    assert res.exit_code == 1 and "no worker node" in res.output


def test_rq_job_round_trips_through_json(fake_redis) -> None:  # type: ignore[no-untyped-def]
    """The node-side entry point, run by a SimpleWorker over fakeredis with RQ's JSON serializer."""
    import os
    import signal

    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    from workers.lab.jobs import run_experiment

    queue = Queue("default", connection=fake_redis, serializer=JSONSerializer)
    job = queue.enqueue(run_experiment, "identity", {"children": "2"}, "fork")
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        SimpleWorker([queue], connection=fake_redis, serializer=JSONSerializer).work(burst=True)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    result = job.latest_result()
    assert result is not None and result.type == result.Type.SUCCESSFUL, result and result.exc_string
    value = result.return_value
    assert value["name"] == "identity" and value["ran_on"]["pid"] == os.getpid()
    assert all(c["ppid"] == os.getpid() for c in value["measurements"]["children"])


@pytest.mark.parametrize(
    "args",
    [
        ["identity", "-p", "children=5000"],
        ["states", "-p", "spin_s=1e9"],
        ["orphan", "-p", "wait_s=inf"],
        ["states", "-p", "spin_s=nan"],
        ["fork", "-p", "mb=100000"],
        ["pool-vs-process", "-p", "batches=-1"],
        ["nosuch"],
        ["all", "-p", "repeats=1000"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    res = runner.invoke(app, ["run", *args])
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output, res.output


def test_every_numeric_param_has_a_finite_documented_range() -> None:
    import math

    import workers.lab as lab

    for exp in lab.all_experiments():
        for key, default in exp.params.items():
            if isinstance(default, bool) or not isinstance(default, int | float):
                continue
            lo, hi = exp.limits[key]
            assert math.isfinite(lo) and math.isfinite(hi) and lo <= default <= hi, (exp.name, key)
            assert f"({lo if not float(lo).is_integer() else int(lo)}.." in exp.describe_param(key)


def test_show_prints_explanation_and_the_code_that_runs() -> None:
    res = runner.invoke(app, ["show", "start-methods"])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "has finished its bootstrapping phase" in flat and "frozen to produce an executable" in flat
    assert "def start_methods(lab: Lab)" in res.output and "repeats=5 (1..50)" in flat
    assert "forkserver the default" in " ".join(runner.invoke(app, ["show", "fork"]).output.split())
    assert runner.invoke(app, ["show", "nosuch"]).exit_code == 2


def test_markup_in_experiment_text_is_printed_verbatim() -> None:
    res = runner.invoke(app, ["run", "subprocess"])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "run([python, '--version'], capture_output=True)" in flat
    assert "Popen([python, '-i']) fed 7 lines" in flat


TINY_IPC = ["-p", "rtt_n=10", "-p", "small_n=10", "-p", "big_n=1", "-p", "repeats=1"]


def _ipc_table(*global_opts: str, params: tuple[str, ...] = ()) -> dict:  # type: ignore[type-arg]
    from cli.main import app as root

    res = runner.invoke(root, [*global_opts, "lab", "run", "ipc-table", "--json", *TINY_IPC, *params])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)  # type: ignore[no-any-return]


@pytest.mark.integration
def test_the_cli_gives_ipc_table_an_embedded_redis_when_none_is_named() -> None:
    r = _ipc_table()
    assert any("network row: embedded redis-server" in e for e in r["events"]), r["events"]
    net = r["measurements"]["network_check"]
    assert net["local"] and net["echoed_intact"] == net["sent"] == 20
    assert {row["kind"] for row in r["measurements"]["table"]} >= {"redis", "pipe", "lock"}


def test_an_unreachable_redis_costs_ipc_table_its_network_row_only() -> None:
    r = _ipc_table("--redis-url", "redis://127.0.0.1:1")
    (why,) = [e for e in r["events"] if "no Redis for the network row" in e]
    assert "cannot reach Redis at redis://127.0.0.1:1" in why  # the CLI's reason, passed down to the report
    assert r["measurements"]["network_check"] is None
    assert "redis" not in {row["kind"] for row in r["measurements"]["table"]}
    network = [c for c in r["claims"] if "network socket" in c["claim"] or "across machines" in c["claim"]]
    assert [c["verdict"] for c in network] == ["not-measured", "not-measured"]


def test_no_redis_is_resolved_for_ipc_table_without_its_network_row() -> None:
    # the URL is unreachable: had the CLI tried it, the report would say so
    r = _ipc_table("--redis-url", "redis://127.0.0.1:1", params=("-p", "redis=false"))
    assert not [e for e in r["events"] if "Redis" in e and "network" in e], r["events"]
    assert r["measurements"]["network_check"] is None

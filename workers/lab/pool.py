"""Section 7.1: the Pool methods with timestamps (7.1.2), and Pool vs Process in both regimes (7.1.3)."""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import Any

from workers.lab.base import Lab, experiment, median, timed
from workers.lab.verdicts import interleaved, speed_verdict, spread

# -- 7.1.2 Pool methods ----------------------------------------------------------------------------------


def _square(item: tuple[int, float]) -> tuple[int, int, float, float]:
    """x*x after sleeping; with the worker pid and start/end wall times."""
    x, delay = item
    start = time.time()
    time.sleep(delay)
    if x < 0:
        raise ValueError(f"negative input {x}")
    return x * x, os.getpid(), start, time.time()


def _square_of(x: int, delay: float) -> int:
    return _square((x, delay))[0]


@experiment(
    "pool-methods",
    "7.1.2",
    "map, map_async, apply, apply_async (callback, error_callback), imap, imap_unordered, starmap, timed",
    params={"processes": 3, "task_ms": 100},
    limits={"processes": (1, 32), "task_ms": (1, 2000)},
    param_help={"processes": "Pool size", "task_ms": "milliseconds each task sleeps"},
)
def pool_methods(lab: Lab) -> None:
    rep, ctx = lab.report, lab.ctx()
    d = float(lab.p("task_ms")) / 1000
    data = [1, 2, 3, 4, 5]
    ms: dict[str, Any] = {}
    with ctx.Pool(processes=int(lab.p("processes"))) as pool:
        pool.map(_square_of_zero, range(int(lab.p("processes"))))  # warm: every worker is up
        t = time.perf_counter()
        res = pool.map(functools.partial(_square_of, delay=d), data)
        ms["map"] = {"returned_after_s": time.perf_counter() - t, "results": res}
        rep.event(f"map(): blocked {ms['map']['returned_after_s'] * 1000:.0f} ms, results {res} (input order)")

        t = time.perf_counter()
        ar = pool.map_async(functools.partial(_square_of, delay=d), data)
        back = time.perf_counter() - t
        res = ar.get(timeout=60)
        ms["map_async"] = {"returned_after_s": back, "get_after_s": time.perf_counter() - t, "results": res}
        rep.event(
            f"map_async(): returned in {back * 1000:.2f} ms; .get() had {res} after "
            f"{ms['map_async']['get_after_s'] * 1000:.0f} ms"
        )

        t = time.perf_counter()
        one = pool.apply(_square, ((10, d),))[0]
        ms["apply"] = {"returned_after_s": time.perf_counter() - t, "result": one}
        rep.event(f"apply(): blocked {ms['apply']['returned_after_s'] * 1000:.0f} ms for one task -> {one}")

        calls: list[tuple[str, Any, str, float]] = []
        t = time.perf_counter()

        def note(kind: str, value: Any) -> None:
            calls.append((kind, value, threading.current_thread().name, time.perf_counter() - t))

        handles = [
            pool.apply_async(
                _square,
                ((x, d),),
                callback=lambda r: note("callback", r[0]),
                error_callback=lambda e: note("error_callback", repr(e)),
            )
            for x in (20, 21, -1)
        ]
        submitted = time.perf_counter() - t
        for h in handles:
            h.wait(60)
        ms["apply_async"] = {"submitted_after_s": submitted, "calls": calls}
        rep.event(f"apply_async() x3 submitted in {submitted * 1000:.2f} ms; callbacks (in the parent): {calls}")

        items = [(1, 3 * d), (2, d / 4), (3, d / 4), (4, d / 4)]
        for name in ("imap", "imap_unordered"):
            t = time.perf_counter()
            seen = [(r[0], round(time.perf_counter() - t, 4)) for r in getattr(pool, name)(_square, items)]
            ms[name] = {"yields": seen}
            rep.event(f"{name}(): first item slow; yielded (result, s) {seen}")

        t = time.perf_counter()
        res = pool.starmap(pow, [(2, 3), (4, 5), (3, 2)])
        ms["starmap"] = {"results": res}
        rep.event(f"starmap(pow, [(2, 3), (4, 5), (3, 2)]) -> {res}")
    rep.measure("pool", ms)
    _pool_verdicts(lab, ms, d, data)


def _square_of_zero(x: int) -> int:
    return x


def _pool_verdicts(lab: Lab, ms: dict[str, Any], d: float, data: list[int]) -> None:
    rep = lab.report
    squares = [x * x for x in data]
    rep.claim(
        "map() blocks and returns the results in input order",
        "holds" if ms["map"]["results"] == squares and ms["map"]["returned_after_s"] >= d * 0.9 else "wrong",
        f"returned after {ms['map']['returned_after_s'] * 1000:.0f} ms (tasks of {d * 1000:.0f} ms) with "
        f"{ms['map']['results']}",
    )
    rep.claim(
        "map_async() does not block; .get() waits for the results",
        "holds" if ms["map_async"]["returned_after_s"] < d / 2 and ms["map_async"]["results"] == squares else "wrong",
        f"map_async returned in {ms['map_async']['returned_after_s'] * 1000:.2f} ms, get() after "
        f"{ms['map_async']['get_after_s'] * 1000:.0f} ms",
    )
    rep.claim(
        "apply() runs one task and blocks until it is done",
        "holds" if ms["apply"]["returned_after_s"] >= d * 0.9 and ms["apply"]["result"] == 100 else "wrong",
        f"apply returned {ms['apply']['result']} after {ms['apply']['returned_after_s'] * 1000:.0f} ms",
    )
    calls = ms["apply_async"]["calls"]
    ok = sorted(c[1] for c in calls if c[0] == "callback") == [400, 441]
    err = [c for c in calls if c[0] == "error_callback"]
    rep.claim(
        "apply_async() calls callback with each result and error_callback with the exception",
        "holds" if ok and err and "ValueError" in err[0][1] else "wrong",
        f"callbacks {[c[:2] for c in calls]}, run in the parent's thread {calls[0][2] if calls else '?'!r} "
        "(keep them short: they block the result handler)",
    )
    imap, unord = ms["imap"]["yields"], ms["imap_unordered"]["yields"]
    in_order = [r for r, _ in imap] == [1, 4, 9, 16]
    rep.claim(
        "imap() yields results in input order as they are computed",
        "holds" if in_order and imap[0][1] < imap[-1][1] + 1e-9 else "wrong",
        f"imap yielded {imap}: the fast items waited for the slow first one; imap_unordered yielded {unord}",
    )
    rep.claim(
        "imap_unordered() yields results as they finish (not in input order)",
        "holds" if [r for r, _ in unord] != [1, 4, 9, 16] and unord[0][1] < imap[0][1] else "wrong",
        f"first result after {unord[0][1] * 1000:.0f} ms vs imap's {imap[0][1] * 1000:.0f} ms; order "
        f"{[r for r, _ in unord]}",
    )
    rep.claim(
        "starmap() unpacks argument tuples",
        "holds" if ms["starmap"]["results"] == [8, 1024, 9] else "wrong",
        f"starmap(pow, ...) -> {ms['starmap']['results']}",
    )


# -- 7.1.3 Pool vs Process -------------------------------------------------------------------------------


def chapter_task(n: int) -> int:
    """The chapter's `task`: sum(i*i for i in range(n))."""
    return sum(i * i for i in range(n))


def _processes(ctx: Any, batches: int, width: int, n: int) -> None:
    for _ in range(batches):
        ps = [ctx.Process(target=chapter_task, args=(n,)) for _ in range(width)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()


def _pool(ctx: Any, batches: int, width: int, n: int) -> None:
    with ctx.Pool(width) as pool:
        for _ in range(batches):
            pool.map(chapter_task, [n] * width)
        pool.close()
        pool.join()


@experiment(
    "pool-vs-process",
    "7.1.3",
    "Pool vs one Process per task: many small batches, one heavy batch, and where they cross",
    params={"batches": 20, "width": 10, "small_n": 10_000, "heavy_n": 100_000, "repeats": 3, "sweep_max": 8},
    limits={
        "batches": (1, 200),
        "width": (1, 32),
        "small_n": (1, 1_000_000),
        "heavy_n": (1, 10_000_000),
        "repeats": (1, 20),
        "sweep_max": (1, 256),
    },
    param_help={
        "batches": "batches in the 'many small batches' regime (chapter: 100)",
        "width": "processes per batch and Pool size (chapter: 10)",
        "small_n": "range of the small task",
        "heavy_n": "range of the heavier task (one batch)",
        "repeats": "repetitions per timing (median)",
        "sweep_max": "largest batch count tried when looking for the crossover",
    },
)
def pool_vs_process(lab: Lab) -> None:
    rep, ctx = lab.report, lab.ctx()
    width, reps = int(lab.p("width")), int(lab.p("repeats"))
    small, heavy, batches = int(lab.p("small_n")), int(lab.p("heavy_n")), int(lab.p("batches"))

    def both(b: int, n: int) -> tuple[list[float], list[float]]:
        got = interleaved(
            {
                "Process": lambda: timed(lambda: _processes(ctx, b, width, n), 1)[0],
                "Pool": lambda: timed(lambda: _pool(ctx, b, width, n), 1)[0],
            },
            reps,
        )
        return got["Process"], got["Pool"]

    many = both(batches, small)
    rep.event(
        f"{batches} batches x {width} tasks of range({small:,}): Process {spread(many[0], 1, 3)} s, "
        f"Pool({width}) {spread(many[1], 1, 3)} s (median (min-max), measured in turn)"
    )
    one = both(1, heavy)
    rep.event(
        f"1 batch x {width} tasks of range({heavy:,}): Process {spread(one[0], 1, 3)} s, Pool({width}) "
        f"{spread(one[1], 1, 3)} s"
    )
    sweep: list[dict[str, Any]] = []
    crossover, unsure = None, False
    b = 1
    while b <= max(1, int(lab.p("sweep_max"))):
        proc, pool = both(b, small)
        won = speed_verdict(pool, proc)
        sweep.append({"batches": b, "process_ms": spread(proc, 1000), "pool_ms": spread(pool, 1000), "pool": won})
        rep.event(
            f"crossover sweep: {b} batch(es): Process {spread(proc, 1000)} ms, Pool {spread(pool, 1000)} ms -> "
            f"Pool faster: {won}"
        )
        if crossover is None and won == "holds":
            crossover = b
        unsure = unsure or won == "too-close"
        b *= 2
    rep.measure("method", lab.method)
    rep.measure("many_small_batches", {"batches": batches, "process_s": many[0], "pool_s": many[1]})
    rep.measure("one_heavy_batch", {"process_s": one[0], "pool_s": one[1]})
    rep.measure("sweep", sweep)
    rep.measure("crossover_batches", crossover)
    pool_wins = speed_verdict(many[1], many[0])
    rep.claim(
        "repeated batches of small tasks: Pool is faster (no process creation per task)",
        pool_wins,
        f"{batches} batches: Pool {spread(many[1], 1, 3)} s vs Process {spread(many[0], 1, 3)} s "
        f"({median(many[0]) / max(median(many[1]), 1e-9):.1f}x by median), start method {lab.method}"
        + ("; the spreads overlap: too close to call" if pool_wins == "too-close" else ""),
        speed=True,
    )
    proc_wins = speed_verdict(one[0], one[1])
    rep.claim(
        "one batch of heavier tasks: Process is faster",
        proc_wins,
        f"Process {spread(one[0], 1, 3)} s vs Pool {spread(one[1], 1, 3)} s for {width} tasks of range({heavy:,})"
        + ("; the spreads overlap: too close to call" if proc_wins == "too-close" else ""),
        speed=True,
    )
    rep.claim(
        "the Pool's set-up pays off once work is repeated (crossover)",
        "holds" if crossover is not None else "too-close" if unsure else "wrong",
        f"Pool was first clearly faster than one-Process-per-task at {crossover} batch(es) of {width}"
        if crossover
        else f"Pool was never clearly faster up to {lab.p('sweep_max')} batches"
        + (" (some too close to call)" if unsure else ""),
        speed=True,
    )

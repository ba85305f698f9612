"""Memory, beyond `imap-memory` and `fork`: imap's results pile up behind a slow consumer (7.1.2), and a
forked child that only reads Python objects still copies their pages (5.1.3)."""

from __future__ import annotations

import functools
import multiprocessing as mp
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any, TypedDict

import psutil

from workers.errors import ConfigError
from workers.lab.base import Lab, experiment
from workers.proclife import reaped

MiB = 1024 * 1024

IMAP_BACKLOG = "imap() saves memory only while the consumer keeps up: finished results wait in the parent"
READ_BYTES = "a forked child that only reads a large bytes buffer keeps sharing it: its own memory does not grow"
READ_OBJECTS = "a forked child that only reads many Python objects still copies their pages (reference counts)"

# -- 7.1.2 imap vs map -----------------------------------------------------------------------------------

_done: Any = None  # a worker's shared counter of finished tasks (set by the Pool initializer)


def _count_into(counter: Any) -> None:
    global _done
    _done = counter


def _result(i: int, size: int) -> bytes:
    """A result of `size` bytes (the large thing a real task would hand back)."""
    if _done is not None:
        with _done.get_lock():
            _done.value += 1
    return bytes(size)


def _items(n: int) -> Iterator[int]:
    """The large iterable, as a generator: nothing exists before it is asked for."""
    yield from range(n)


def _peak(fn: Callable[[], int]) -> tuple[int, int]:
    """(bytes handled, peak traced Python memory in bytes above the start) while `fn` runs."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    total = fn()
    return total, max(0, tracemalloc.get_traced_memory()[1] - base)


def _wait_done(counter: Any, n: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while counter.value < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(counter.value >= n)


@experiment(
    "imap-backlog",
    "7.1.2",
    "peak parent memory of map(), imap() consumed as results come, and imap() with a consumer that falls behind",
    params={"items": 2000, "result_kib": 16, "processes": 2},
    limits={"items": (10, 200_000), "result_kib": (1, 1024), "processes": (1, 16)},
    param_help={
        "items": "length of the input generator",
        "result_kib": "KiB each task returns (map holds them all at once; items x result_kib at most 512 MiB)",
        "processes": "Pool size",
    },
)
def imap_backlog(lab: Lab) -> None:
    rep = lab.report
    n, size, procs = int(lab.p("items")), int(lab.p("result_kib")) * 1024, int(lab.p("processes"))
    if n * size > 512 * MiB:
        raise ConfigError(f"items x result_kib = {n * size // MiB} MiB: at most 512 MiB (map holds all of it)")
    ctx = lab.ctx()
    counter = ctx.Value("l", 0)
    task = functools.partial(_result, size=size)
    started = tracemalloc.is_tracing()
    if not started:
        tracemalloc.start()
    try:
        with ctx.Pool(procs, initializer=_count_into, initargs=(counter,)) as pool:
            pool.map(task, range(procs))  # warm: the workers exist before anything is measured

            def with_map() -> int:
                return sum(len(r) for r in pool.map(task, _items(n)))

            def with_imap() -> int:
                return sum(len(r) for r in pool.imap(task, _items(n)))

            def with_stalled_imap() -> int:
                counter.value = 0
                it = pool.imap(task, _items(n))
                total = len(next(it))
                finished = _wait_done(counter, n, 60)  # the consumer is busy elsewhere until every task is done
                rep.event(f"stalled consumer: all {n} tasks finished before it read on: {finished}")
                return total + sum(len(r) for r in it)

            got: dict[str, tuple[int, int]] = {}
            for name, fn in (("map", with_map), ("imap", with_imap), ("imap_stalled", with_stalled_imap)):
                got[name] = _peak(fn)
                rep.event(f"{name}: {got[name][0] // MiB} MiB of results handled, peak {got[name][1] / MiB:.1f} MiB")
            pool.close()
            pool.join()
    finally:
        if not started:
            tracemalloc.stop()
    data = n * size / MiB
    peaks = {name: round(peak / MiB, 2) for name, (_, peak) in got.items()}
    rep.measure("results_mib", round(data, 2))
    rep.measure("peak_traced_mib", peaks)
    rep.measure("how", "tracemalloc peak of the parent's Python allocations (result-handler thread included)")
    complete = all(total == n * size for total, _ in got.values())
    piled = complete and peaks["imap_stalled"] >= peaks["map"] / 2 and peaks["imap"] < peaks["map"] / 2
    rep.edge(
        IMAP_BACKLOG,
        "holds" if piled else "wrong",
        f"over a {n}-item generator of {size // 1024} KiB results ({data:.0f} MiB in all) the parent peaked at "
        f"{peaks['imap']} MiB with imap() consumed as results came, but at {peaks['imap_stalled']} MiB when the "
        f"consumer read one result and then waited for the tasks to finish, close to map()'s {peaks['map']} MiB: "
        f"imap has no back-pressure, the workers run ahead and the results queue up in the parent"
        if piled
        else f"peaks: imap {peaks['imap']} MiB, imap with a stalled consumer {peaks['imap_stalled']} MiB, map "
        f"{peaks['map']} MiB" + ("" if complete else " (some results missing)"),
    )


# -- 5.1.3 fork and copy-on-write ------------------------------------------------------------------------


class Footprint(TypedDict):
    """A process's memory in MiB: unique (USS), proportional (PSS) and resident (RSS)."""

    uss: float
    pss: float
    rss: float


def _footprint(pid: int) -> Footprint:
    info = psutil.Process(pid).memory_full_info()
    return {
        "uss": round(info.uss / MiB, 1),
        "pss": round(getattr(info, "pss", 0) / MiB, 1),
        "rss": round(info.rss / MiB, 1),
    }


def _cow_child(conn: Any, buf: bytearray, objs: list[str]) -> None:
    """Report in; read one byte of every page of the buffer; iterate over the objects; exit when told."""
    try:
        conn.send("forked")
        conn.recv()
        seen = 0
        for i in range(0, len(buf), 4096):  # reads only: the buffer's pages stay shared
            seen += buf[i]
        conn.send(f"read {len(buf) // 4096} pages of the buffer")
        conn.recv()
        n = 0
        for _ in objs:  # only reading, but every object's reference count is written to
            n += 1
        conn.send(f"read {n} objects")
        conn.recv()
    except (EOFError, OSError):
        pass  # the parent stopped listening


def _cow_stages(lab: Lab, mib: int, objects: int) -> dict[str, Footprint] | None:
    """The parent's footprint and the child's at each stage; None if the child stopped reporting."""
    buf = bytearray(b"\x01") * (mib * MiB)  # written, so resident in the parent
    objs = [f"object-{i:08d}" for i in range(objects)]
    ctx = mp.get_context("fork")
    here, there = ctx.Pipe()
    child = ctx.Process(target=_cow_child, args=(there, buf, objs), name="cow-child")
    stages: dict[str, Footprint] = {"parent": _footprint(psutil.Process().pid)}
    with reaped(child):
        child.start()
        there.close()
        pid = int(child.pid or 0)
        try:
            for stage in ("after_fork", "after_reading_buffer", "after_reading_objects"):
                if not here.poll(30):
                    lab.report.event(f"the forked child did not report within 30 s ({stage})")
                    return None
                said = here.recv()
                stages[stage] = _footprint(pid)
                lab.report.event(f"child {pid} {said}: {stages[stage]}")
                here.send("next")
        finally:
            here.close()  # a child still waiting for a command gets EOF and ends
    del buf, objs
    return stages


@experiment(
    "cow-refcounts",
    "5.1.3",
    "a forked child's own memory (USS) after fork, after reading a large buffer, after reading many Python objects",
    params={"mib": 64, "objects": 200_000},
    limits={"mib": (4, 512), "objects": (10_000, 2_000_000)},
    param_help={"mib": "MiB the parent holds in a written buffer", "objects": "small str objects the parent holds"},
)
def cow_refcounts(lab: Lab) -> None:
    rep = lab.report
    mib, objects = int(lab.p("mib")), int(lab.p("objects"))
    if "fork" not in mp.get_all_start_methods():
        rep.edge(READ_BYTES, "not-measured", "this platform has no fork")
        rep.edge(READ_OBJECTS, "not-measured", "this platform has no fork")
        return
    rep.event(f"the child is started with the 'fork' start method (the run's is {lab.method!r}): this is about fork")
    try:
        st = _cow_stages(lab, mib, objects)
    except (psutil.AccessDenied, NotImplementedError) as exc:
        st, why = None, f"USS needs /proc/PID/smaps: {type(exc).__name__}"
    else:
        why = "the forked child stopped reporting"
    if st is None:
        rep.edge(READ_BYTES, "not-measured", why)
        rep.edge(READ_OBJECTS, "not-measured", why)
        return
    for stage, fp in st.items():
        rep.measure(f"{stage}_mib", fp)
    fresh, buffer, read = (st[k]["uss"] for k in ("after_fork", "after_reading_buffer", "after_reading_objects"))
    by_buffer, by_objects = buffer - fresh, read - buffer
    kept = by_buffer < mib / 10
    rep.edge(
        READ_BYTES,
        "holds" if kept else "wrong",
        f"reading one byte of each of the {mib * 256:,} pages of the {mib} MiB buffer changed the child's USS by "
        f"{by_buffer:+.1f} MiB ({fresh} -> {buffer}); its RSS ({st['after_reading_buffer']['rss']} MiB) counts "
        f"the shared pages too"
        if kept
        else f"reading the {mib} MiB buffer raised the child's USS by {by_buffer:.1f} MiB ({fresh} -> {buffer})",
    )
    # each str object is about 60 bytes: 200,000 of them fill about 12 MiB of pages
    copied = by_objects > 1
    rep.edge(
        READ_OBJECTS,
        "holds" if copied else "wrong",
        f"iterating over {objects:,} str objects without changing them raised the child's USS by {by_objects:.1f} "
        f"MiB ({buffer} -> {read}): each visit writes the object's reference count, so its page is copied"
        if copied
        else f"iterating over {objects:,} objects raised the child's USS by only {by_objects:.1f} MiB",
    )

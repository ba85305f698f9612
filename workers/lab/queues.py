"""Section 6.1-6.2: data isolation (each child changes its own copy), and Queue producer/consumer."""

from __future__ import annotations

import os
import queue as queue_mod
import time
from collections import Counter
from typing import Any

from workers.lab.base import Lab, experiment
from workers.proclife import reaped

# -- 6.1 data isolation ----------------------------------------------------------------------------------

num = 100  # the chapter's global


def _decrement(results: Any, shared: Any) -> None:
    global num
    num -= 1
    with shared.get_lock():
        shared.value -= 1
    results.put((os.getpid(), num))


@experiment(
    "isolation",
    "6.1",
    "ten children decrement a global: each changes its own copy, the parent still sees 100",
    params={"children": 10},
    limits={"children": (1, 64)},
    param_help={"children": "children that decrement the global"},
)
def isolation(lab: Lab) -> None:
    rep, ctx = lab.report, lab.ctx()
    results, shared = ctx.Queue(), ctx.Value("i", 100)
    procs = [ctx.Process(target=_decrement, args=(results, shared)) for _ in range(lab.p("children"))]
    with reaped(*procs):
        for p in procs:
            p.start()
        seen = [results.get(timeout=30) for _ in procs]
    values = sorted({v for _, v in seen})
    rep.event(f"{len(procs)} children each ran `num -= 1`: they saw num = {values}")
    rep.event(
        f"parent after join(): num = {num}; a shared ctx.Value('i', 100) decremented under its lock = {shared.value}"
    )
    rep.measure("children_saw", values)
    rep.measure("parent_num", num)
    rep.measure("shared_value", shared.value)
    rep.claim(
        "children get their own copy of the data: the parent still prints 100",
        "holds" if num == 100 and values == [99] else "wrong",
        f"parent num = {num}; every child saw {values} after its own decrement; only shared memory "
        f"(Value) accumulates: {shared.value}",
    )


# -- 6.2 Queue -------------------------------------------------------------------------------------------


def _producer(q: Any, producer_id: int, count: int, delay: float) -> None:
    for i in range(count):
        q.put(f"Producer-{producer_id}-Item-{i + 1}")
        time.sleep(delay)
    q.put(f"END-{producer_id}")


def _chapter_consumer(q: Any, out: Any, consumer_id: int, delay: float = 0.0) -> None:
    """The chapter's consumer: stop at the first END, putting it back for the others."""
    consumed = []
    while True:
        item = q.get()
        if item.startswith("END"):
            q.put(item)
            break
        consumed.append(item)
        time.sleep(delay)
    out.put((consumer_id, consumed))


def _consumer(q: Any, out: Any, consumer_id: int) -> None:
    """Stop at a None sentinel (one per consumer, sent after every producer finished)."""
    consumed = []
    while (item := q.get()) is not None:
        if not str(item).startswith("END"):
            consumed.append(item)
    out.put((consumer_id, consumed))


def _worker(tasks: Any, results: Any, task_s: float) -> None:
    import multiprocessing as mp

    name = mp.current_process().name
    while (task := tasks.get()) is not None:
        task_id, numbers = task
        time.sleep(task_s)
        results.put((task_id, name, sum(x * x for x in numbers)))


def _run_scheme(
    lab: Lab, consumer: Any, counts: list[int], delay: float, consumer_delay: float = 0.0, slow_last: float = 0.0
) -> tuple[list[str], dict[int, list[str]], list[str]]:
    """Producers with `counts` items (the last one `slow_last` s per item if given), 2 consumers; returns
    (produced, consumed by consumer, left over)."""
    ctx = lab.ctx()
    q, out = ctx.Queue(maxsize=10), ctx.Queue()
    delays = [delay] * (len(counts) - 1) + [slow_last or delay]
    producers = [ctx.Process(target=_producer, args=(q, i + 1, n, delays[i])) for i, n in enumerate(counts)]
    extra = (consumer_delay,) if consumer is _chapter_consumer else ()
    consumers = [ctx.Process(target=consumer, args=(q, out, i + 1, *extra)) for i in range(2)]
    leftover: list[str] = []
    with reaped(*producers, *consumers):
        for p in [*producers, *consumers]:
            p.start()
        if consumer is _consumer:
            for p in producers:
                p.join()
            for _ in consumers:
                q.put(None)
        got = dict(out.get(timeout=30) for _ in consumers)
        for c in consumers:
            c.join()
        # whatever the consumers left behind (keeps blocked producers moving until they finish)
        while any(p.is_alive() for p in producers) or not q.empty():
            try:
                leftover.append(q.get(timeout=0.05))
            except queue_mod.Empty:
                continue
    produced = [f"Producer-{i + 1}-Item-{k + 1}" for i, n in enumerate(counts) for k in range(n)]
    return produced, got, [x for x in leftover if x and not x.startswith("END")]


@experiment(
    "queue",
    "6.2",
    "Queue producer/consumer with sentinels and a worker group: is every item consumed exactly once?",
    params={"items": 3, "tasks": 10, "workers": 3, "task_ms": 20},
    limits={"items": (1, 1000), "tasks": (1, 1000), "workers": (1, 32), "task_ms": (0, 1000)},
    param_help={
        "items": "items per producer (chapter: 3; the edge case gives the second producer twice as many)",
        "tasks": "tasks for the worker group",
        "workers": "worker processes",
        "task_ms": "milliseconds each task takes",
    },
)
def queue_exp(lab: Lab) -> None:
    rep, ctx = lab.report, lab.ctx()
    n = int(lab.p("items"))
    # the chapter's timing scaled by 1/10: producers put every 0.5 s -> 0.05 s, consumers take 0.3 s -> 0.03 s
    counts, delay = [n, n], 0.05
    produced, got, lost = _run_scheme(lab, _chapter_consumer, counts, delay, consumer_delay=0.03)
    eaten = [x for items in got.values() for x in items]
    rep.event(
        f"chapter's setup (2 producers x {n}, END-<id> per producer, put back): consumers took "
        f"{ {k: len(v) for k, v in got.items()} }; {len(lost)} item(s) never consumed"
    )
    uneven = [n, 2 * n]
    produced_u, got_u, lost_u = _run_scheme(lab, _chapter_consumer, uneven, 0.01, slow_last=0.05)
    eaten_u = [x for items in got_u.values() for x in items]
    rep.event(
        f"same scheme, producers of {uneven} items, the longer one slower: consumers took {len(eaten_u)} of "
        f"{len(produced_u)}; {len(lost_u)} never consumed"
    )
    counts = uneven
    produced2, got2, lost2 = _run_scheme(lab, _consumer, counts, delay)
    eaten2 = Counter(x for items in got2.values() for x in items)
    exactly_once = eaten2 == Counter(produced2) and not lost2
    rep.event(
        f"one None per consumer after joining the producers: consumers took "
        f"{ {k: len(v) for k, v in got2.items()} } of {len(produced2)}; exactly once: {exactly_once}"
    )
    fifo_q = ctx.Queue()
    feeder = ctx.Process(target=_producer, args=(fifo_q, 1, 200, 0.0))
    with reaped(feeder):
        feeder.start()
        order = [fifo_q.get(timeout=30) for _ in range(201)]
    fifo = order[:-1] == [f"Producer-1-Item-{i + 1}" for i in range(200)]
    small = ctx.Queue(maxsize=3)
    for i in range(3):
        small.put(i)
    try:
        small.put(3, timeout=0.05)
        full = "no error"
    except queue_mod.Full:
        full = "queue.Full"
    for _ in range(3):
        small.get()
    rep.event(
        f"Queue(maxsize=3): a 4th put(timeout=0.05) -> {full}; 200 items from one producer arrived in order: {fifo}"
    )
    dist = _distribute(lab)
    rep.measure("chapter_scheme", {"produced": len(produced), "consumed": len(eaten), "lost": len(lost)})
    rep.measure(
        "sentinel_scheme",
        {"produced": len(produced2), "consumed": sum(eaten2.values()), "exactly_once": exactly_once},
    )
    rep.measure("distribution", dist)
    rep.claim(
        "Queue is FIFO",
        "holds" if fifo else "wrong",
        f"200 items put by one producer were got in the same order: {fifo}",
        "6.2",
    )
    rep.claim(
        "Queue(maxsize) bounds the queue",
        "holds" if full == "queue.Full" else "wrong",
        f"a 4th put into Queue(maxsize=3) blocked and timed out with {full}",
        "6.4",
    )
    rep.claim(
        "the chapter's END-per-producer sentinels (put back for the others) end consumers after all items",
        "wrong" if lost else "holds",
        f"in the chapter's setup ({n}+{n} items) consumers stopped at the first END with {len(lost)} of "
        f"{len(produced)} items never consumed"
        if lost
        else f"the chapter's setup ({n}+{n} items, its timing scaled by 1/10): {len(eaten)} of {len(produced)} "
        "consumed, none left",
        "6.2.1",
    )
    rep.edge(
        "the END-per-producer sentinels also work when one producer makes more items than the other",
        "wrong" if lost_u else "holds",
        f"producers of {uneven} items: consumers stop at the first END (put back for the others), so "
        f"{len(lost_u)} of {len(produced_u)} items of the longer producer were never consumed"
        if lost_u
        else f"producers of {uneven} items: all {len(eaten_u)} consumed this run (a consumer still stops at the "
        "first END, so the longer producer's late items can be left behind)",
        "6.2.1",
    )
    rep.edge(
        "the fix: one sentinel per consumer, sent after the producers finished, consumes every item exactly once",
        "holds" if exactly_once else "wrong",
        f"{sum(eaten2.values())} consumed of {len(produced2)} produced, duplicates "
        f"{sum(c - 1 for c in eaten2.values() if c > 1)}, left over {len(lost2)}",
        "6.2.1",
    )
    rep.claim(
        "a Queue distributes tasks to a group of workers (each task done once)",
        "holds" if dist["exactly_once"] else "wrong",
        f"{dist['tasks']} tasks -> per worker {dist['per_worker']}, each exactly once: {dist['exactly_once']}",
        "6.2.2",
    )


def _distribute(lab: Lab) -> dict[str, Any]:
    rep, ctx = lab.report, lab.ctx()
    tasks_q, results = ctx.Queue(), ctx.Queue()
    tasks = [(f"Task-{i + 1}", [i, i + 1, i + 2]) for i in range(int(lab.p("tasks")))]
    for task in tasks:
        tasks_q.put(task)
    workers = [
        ctx.Process(target=_worker, args=(tasks_q, results, lab.p("task_ms") / 1000), name=f"Worker-{i + 1}")
        for i in range(int(lab.p("workers")))
    ]
    for _ in workers:
        tasks_q.put(None)
    start = time.perf_counter()
    with reaped(*workers):
        for w in workers:
            w.start()
        done = [results.get(timeout=60) for _ in tasks]
    took = time.perf_counter() - start
    per_worker = dict(sorted(Counter(name for _, name, _ in done).items()))
    once = sorted(t for t, _, _ in done) == sorted(t for t, _ in tasks)
    rep.event(f"{len(tasks)} tasks, {len(workers)} workers, one None each: {per_worker} in {took * 1000:.0f} ms")
    return {"tasks": len(tasks), "per_worker": per_worker, "exactly_once": once, "seconds": round(took, 3)}

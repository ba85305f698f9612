"""One `mplab compare` run, start to end: isolate it, start what it needs, measure, clean up.

Order: remove crashed runs' leftovers, register this run, start its nodes (or pick the user's), wait
until they are quiet, then the in-host Pool and the serial child, then every workload in interleaved
rounds. However it ends (Ctrl-C and SIGTERM included) every process it started is stopped within ~2 s
and nothing of it is left in Redis; signals are held while that clean-up runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from subprocess import Popen

import redis
from rq.queue import Queue

from workers import procs
from workers.compare import isolation, latency, local, measure, remote
from workers.compare.isolation import Footprint, RunRecord
from workers.compare.plan import Options, Plan
from workers.compare.records import Header, LatencyPoint, NodeSeen, Result, Row, WireCost
from workers.errors import ConfigError
from workers.heartbeat import live_nodes, read_nodes, worker_key
from workers.redis_server import connect
from workers.settings import Settings, default_pool_size, machine_facts
from workers.tickets import network

Progress = Callable[[str, int], None]  # (what runs now, steps in total)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while cleaning up (bounded); a signal that came meanwhile is raised after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    old = {s: signal.signal(s, lambda n, f: came.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if came:
        raise KeyboardInterrupt


def run(settings: Settings, url: str, where: str, opts: Options, progress: Progress) -> Result:
    """Run every workload in every mode; the result is a record (see `records`)."""
    with connect(url) as client:
        return _run(settings, url, where, opts, progress, client)


def _run(settings: Settings, url: str, where: str, opts: Options, progress: Progress, client: redis.Redis) -> Result:
    plan = Plan.make(opts.quick)
    started = time.perf_counter()
    cleaned = isolation.clean_leftovers(client)
    record = RunRecord.new()
    footprint = Footprint(client, record)
    closers: list[Callable[[bool], None]] = []
    interrupted = True
    try:
        footprint.save()
        header, target, our_nodes, stock = _rq_side(settings, url, where, opts, client, footprint, closers)
        header.cleaned_runs = cleaned
        ctx = settings.mp_context()
        cores = default_pool_size()
        pool_cm = local.warm_pool(ctx, cores)
        pool, startup = pool_cm.__enter__()
        closers.append(lambda fast: _close(pool_cm))
        header.pool_startup_ms = round(startup * 1000, 2)
        serial = local.SerialChild(ctx)
        closers.append(serial.close)
        if our_nodes is not None:
            mem = our_nodes.idle_memory()
            header.node_idle_rss_mb = [round(r / 2**20, 1) for r, _ in mem]
            header.node_idle_pss_mb = [round(p / 2**20, 1) for _, p in mem]
        before = _slot_jobs(client, header) if opts.nodes == 0 else 0
        session = measure.Session(plan, ctx, pool, serial, target, stock, url, cores, footprint, progress)
        result = session.run_all(header)
        if opts.rtts:
            result.latency, result.wire = _latency(settings, url, opts, session, closers, result.rows)
        if opts.nodes == 0:
            header.foreign_jobs = max(0, _slot_jobs(client, header) - before - _our_jobs(client, record))
        interrupted = False
    finally:
        with held_signals():
            for close in reversed(closers):
                with contextlib.suppress(Exception):
                    close(interrupted)
            # a fresh connection: the run's own may have been cut mid-reply by the signal
            with contextlib.suppress(redis.RedisError), redis.Redis.from_url(url, socket_timeout=5) as fresh:
                isolation.remove_run(fresh, record)
    header.load_end = round(os.getloadavg()[0], 2)
    header.duration_s = round(time.perf_counter() - started, 2)
    _warn(header, result)
    return result


def _latency(
    settings: Settings,
    url: str,
    opts: Options,
    session: measure.Session,
    closers: list[Callable[[bool], None]],
    rows: list[Row],
) -> tuple[list[LatencyPoint], list[WireCost]]:
    """--rtt: the RQ modes again behind the latency proxy, per RTT; then commands/round trips per job."""
    run = latency.LatencyRun(
        url, session.plan, session.serial, session.pool, session.cores, max(1, opts.nodes), opts.node_pool,
        settings.start_method, session.footprint, session.step, closers,
    )  # fmt: skip
    pool_rows = [r for r in rows if r.workload == "cpu" and r.mode.startswith("pool")]
    points = [run.point(rtt, pool_rows) for rtt in opts.rtts]
    session.step("Redis commands and round trips per job")
    return points, latency.wire_costs(url, slots=1)


def _close(cm: contextlib.AbstractContextManager[object]) -> None:
    cm.__exit__(None, None, None)


def _rq_side(
    settings: Settings,
    url: str,
    where: str,
    opts: Options,
    client: redis.Redis,
    footprint: Footprint,
    closers: list[Callable[[bool], None]],
) -> tuple[Header, remote.RqTarget, remote.LocalNodes | None, remote.StockWorkers]:
    """The nodes the RQ modes run on, the queue they serve, and the header naming them."""
    record = footprint.record
    cores = default_pool_size()
    here = socket.gethostname()
    our_nodes = None
    stock_queues = {kind: footprint.add_queue(record.queue(f"-stock-{kind}")) for kind in remote.STOCK}
    stock = remote.StockWorkers(client, url, stock_queues)
    commands: list[Popen[bytes]] = []  # nodes and stock workers: stopped together, in one bounded wait
    closers.append(lambda fast: procs.stop(commands, grace=0.5 if fast else 10.0, twice=fast))
    if opts.nodes > 0:
        stock.spawn()  # their start-up runs alongside the nodes'; both are over before anything is measured
        commands += stock.procs
        queue = footprint.add_queue(record.queue())
        names = [f"compare-{record.run_id}-{i + 1}" for i in range(opts.nodes)]
        our_nodes = remote.LocalNodes(url, queue, names, opts.node_pool, settings.start_method)
        our_nodes.__enter__()
        commands += our_nodes.procs
        closers.append(lambda fast: our_nodes.logs.cleanup())
        used = set(names)
        slots = opts.nodes * opts.node_pool
        cores_used = min(slots, cores)
    else:
        queue = opts.queue or "default"
        record.shared_queue = queue
        footprint.save()
        used, slots, cores_used = _pick_nodes(client, queue, opts.node_names, here, cores)
        waiting = int(client.llen(Queue(queue, connection=client).key))
        if waiting:
            raise ConfigError(
                f"queue {queue!r} has {waiting} job(s) waiting: they would run between compare's own and bias "
                "its figures; let them finish, or give --queue a queue only idle nodes serve"
            )
        stock.spawn()
        commands += stock.procs
    seen = [
        NodeSeen(
            n.name, n.host, ",".join(n.queues), n.slots_total, n.name in used, our_nodes is not None and n.name in used
        )
        for n in live_nodes(client)
    ]
    header = Header(
        machine=machine_facts(settings.start_method),
        redis_version=str(client.info("server")["redis_version"]),
        redis=where,
        quick=opts.quick,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        run_id=record.run_id,
        queue=queue,
        rq_slots=slots,
        nodes_started=opts.nodes,
        node_pool=opts.node_pool,
        nodes=seen,
        load_start=round(os.getloadavg()[0], 2),
    )
    stock.wait_registered()
    procs.wait_quiet(stock.pids(), timeout=5)
    target = remote.RqTarget(client, queue, slots, cores_used, footprint.add_jobs)
    return header, target, our_nodes, stock


def _pick_nodes(
    client: redis.Redis, queue: str, named: tuple[str, ...], here: str, cores: int
) -> tuple[set[str], int, int]:
    """--nodes 0: exactly the live nodes serving `queue` (or exactly the named ones, if no other serves it)."""
    serving = {n.name: n for n in live_nodes(client, queue)}
    if named:
        missing = [n for n in named if n not in serving]
        if missing:
            raise ConfigError(f"no live node named {missing[0]!r} serves queue {queue!r}")
        others = sorted(set(serving) - set(named))
        if others:
            raise ConfigError(
                f"node {others[0]!r} also serves queue {queue!r} and would take compare's jobs: name it too, "
                "stop it, or use a queue only the named nodes serve"
            )
    if not serving:
        raise ConfigError(
            f"--nodes 0 needs running worker nodes serving queue {queue!r}, and none sent a heartbeat to this Redis"
        )
    slots = sum(n.slots_total for n in serving.values())
    local_slots = sum(n.slots_total for n in serving.values() if n.host == here)
    cores_used = min(local_slots, cores) + (slots - local_slots)  # other hosts: at most one core per slot
    return set(serving), slots, cores_used


def _slot_jobs(client: redis.Redis, header: Header) -> int:
    """Jobs done + failed so far by every slot of the nodes compare uses (RQ's own per-worker counters)."""
    total = 0
    for node in read_nodes(client):
        if not any(s.name == node.name and s.used for s in header.nodes):
            continue
        for slot in node.slots:
            done, failed = client.hmget(worker_key(slot), "successful_job_count", "failed_job_count")
            total += int(done or 0) + int(failed or 0)
    return total


def _our_jobs(client: redis.Redis, record: RunRecord) -> int:
    count = int(client.scard(isolation.jobs_key(record.run_id)))
    return count + sum(len(network.job_ids(client, sale)) for sale in record.sales)


def _warn(header: Header, result: Result) -> None:
    cores = max(1, header.machine["usable_cores"])
    busy = max(header.load_start, header.load_end)
    if busy > 0.5 * cores:
        header.warnings.append(
            f"the machine was busy: load average {header.load_start} at start, {header.load_end} at end, "
            f"on {cores} core(s) (> 0.5 per core); figures may be low and noisy"
        )
    if header.serial_cpu_share < 0.9:
        header.warnings.append(
            f"the serial reference got only {header.serial_cpu_share:.0%} of a core in its worst round: "
            "other processes shared its core"
        )
    if header.foreign_jobs:
        header.warnings.append(
            f"{header.foreign_jobs} job(s) that were not compare's ran on the nodes it used during the run: "
            "their time is in the RQ figures"
        )
    invalid = [r for r in result.rows if not r.valid]
    if invalid:
        header.warnings.append(f"{len(invalid)} row(s) stayed above the physical limit when re-measured: invalid")

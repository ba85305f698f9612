"""Recovery time after kill -9: mplab's node vs a stock `rq worker`, measured in the same run.

    .venv/bin/python benchmarks/recovery.py [--repeats 3] [--bound 120] [--size 2000000] [--json]

Every scenario runs on a private embedded redis-server with two workers, A and B. A job starts on A;
A is killed with SIGKILL; the clock runs until the job is no longer stuck on A: queued again, running
on B, or finished (by A's orphaned slot).

  mplab, node main killed mid-batch     A's slots see the loss at once and re-queue the batch
  mplab, node main killed mid-single    A's orphaned slot finishes its job (the remaining run time)
  mplab, whole node killed mid-single   B's sweep re-queues the job once A's heartbeat has expired
  mplab, job popped, slot killed        A's slot is killed -9 right after a job left the queue but before
                                        the run was registered (simulated: the pop is the benchmark's);
                                        a node's lost-job scan re-queues it. Stock RQ loses such a job.
  stock rq, worker killed mid-single    `rq worker` and its work horse, with B a second `rq worker`:
                                        RQ re-queues a dead worker's job only after its heartbeat TTL
                                        (job timeout + 60 s) and its 10-minute maintenance; bounded at
                                        --bound seconds. Compare it with the whole-node scenario.

Each mplab scenario runs --repeats times (median, min-max); the stock one once (it hits the bound).
Prints each recovery time and the ratio stock/mplab ("> N" when stock RQ hit the bound). Figures
depend on the machine and its load: record them on a quiet one, next to ../shared/BASELINES.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tasks import batch, cpu  # noqa: E402
from workers.redis_server import embedded_redis  # noqa: E402


@dataclass
class Run:
    scenario: str
    recovered_s: float | None  # None: not recovered within the bound
    bound_s: float


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> float | None:
    """Seconds until `predicate` holds, or None after `timeout`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(step)
    return None


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Started worker processes; on exit every one of them and its descendants is killed and reaped."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
            proc.kill()
            proc.wait()


def mplab_node(url: str, name: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "cli", "--redis-url", url, "worker", "--name", name, "--pool", "1"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stock_worker(url: str) -> subprocess.Popen[bytes]:
    rq_bin = str(Path(sys.executable).with_name("rq"))
    cmd = [rq_bin, "worker", "--serializer", "json", "-u", url, "default"]  # RQ's default, forking Worker
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ready(client: redis.Redis, name: str) -> bool:
    return client.hget(f"mplab:node:{name}", "slots_total") == b"1"


def running_on(job: Job) -> str | None:
    """The worker running `job`, or None if it is not running."""
    if job.get_status(refresh=True) != JobStatus.STARTED:
        return None
    job.refresh()
    return job.worker_name


def moved(job: Job, dead: str) -> bool:
    """The job is no longer stuck on the dead worker: queued again, running elsewhere, or finished."""
    status = job.get_status(refresh=True)
    return status in (JobStatus.QUEUED, JobStatus.FINISHED) or (status == JobStatus.STARTED and running_on(job) != dead)


def scenario(url: str, kind: str, size: int, bound: float) -> Run:
    """One mplab scenario: kill -9 node A's main process (or its whole tree) while it runs the job."""
    client = redis.Redis.from_url(url)
    client.flushall()
    queue = Queue("default", connection=client, serializer=JSONSerializer)
    with processes() as procs:
        procs.append(mplab_node(url, "B"))
        wait_for(lambda: ready(client, "B"), 60)
        blocker = queue.enqueue(cpu.sum_squares, size * 60)  # keeps B busy so that A takes the job
        wait_for(lambda: (running_on(blocker) or "").startswith("B."), 60)
        procs.append(mplab_node(url, "A"))
        wait_for(lambda: ready(client, "A"), 60)
        if kind == "batch":
            job = queue.enqueue(batch.run_batch, "tasks.cpu.sum_squares", [[size * 4]] * 8, 1)
        else:
            job = queue.enqueue(cpu.sum_squares, size * 40)
        if not wait_for(lambda: running_on(job) == "A.slot1", 60):
            raise SystemExit(f"{kind}: the job did not start on node A")
        time.sleep(0.5)
        victims = [psutil.Process(procs[-1].pid)]
        if kind == "whole":
            victims += victims[0].children(recursive=True)
        for victim in victims:
            victim.kill()
        took = wait_for(lambda: moved(job, "A.slot1"), bound)
    client.close()
    label = {"batch": "node main killed mid-batch", "single": "node main killed mid-single",
             "whole": "whole node killed mid-single"}[kind]  # fmt: skip
    return Run(f"mplab, {label}", took, bound)


def popped(url: str, size: int, bound: float) -> Run:
    """A job popped by A's slot, which is killed before it registers the run (the pop is ours)."""
    client = redis.Redis.from_url(url)
    client.flushall()
    with processes() as procs:
        procs.append(mplab_node(url, "A"))
        wait_for(lambda: ready(client, "A"), 60)
        busy = Queue("high", connection=client, serializer=JSONSerializer).enqueue(cpu.sum_squares, size * 10)
        wait_for(lambda: running_on(busy) == "A.slot1", 60)
        low = Queue("low", connection=client, serializer=JSONSerializer)
        job = low.enqueue(cpu.sum_squares, size)
        client.lpop(low.key)  # what the slot's BLPOP did just before it was killed
        os.kill(int(client.hget("rq:worker:A.slot1", "pid") or 0), signal.SIGKILL)
        took = wait_for(lambda: low.job_ids == [job.id] or job.get_status(refresh=True) != JobStatus.QUEUED, bound)
    client.close()
    return Run("mplab, job popped, slot killed before its start", took, bound)


def stock(url: str, size: int, bound: float) -> Run:
    client = redis.Redis.from_url(url)
    client.flushall()
    queue = Queue("default", connection=client, serializer=JSONSerializer)
    with processes() as procs:
        procs.append(stock_worker(url))
        job = queue.enqueue(cpu.sum_squares, size * 40)
        if not wait_for(lambda: running_on(job) is not None, 60):
            raise SystemExit("stock: the job did not start")
        dead = running_on(job) or ""
        procs.append(stock_worker(url))
        time.sleep(0.5)
        victim = psutil.Process(procs[0].pid)
        for proc in [victim, *victim.children(recursive=True)]:  # the worker and its work horse
            proc.kill()
        took = wait_for(lambda: moved(job, dead), bound, step=0.2)
    client.close()
    return Run("stock rq worker (and horse) killed mid-single", took, bound)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bound", type=float, default=120.0, help="seconds to wait for a recovery (default 120)")
    parser.add_argument("--size", type=int, default=2_000_000, help="n of each sum_squares task (default 2e6)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each mplab scenario (default 3)")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    args = parser.parse_args()
    if not (1 <= args.bound <= 3600 and 1 <= args.size <= 10**8 and 1 <= args.repeats <= 20):
        parser.error("--bound must be 1..3600 s, --size 1..1e8 and --repeats 1..20")
    runs: list[Run] = []
    with embedded_redis() as server:
        for _ in range(args.repeats):  # interleaved: each round sees the same load
            runs += [scenario(server.url, kind, args.size, args.bound) for kind in ("batch", "single", "whole")]
            runs.append(popped(server.url, args.size, args.bound))
        base = stock(server.url, args.size, args.bound)
    if args.json:
        print(json.dumps([asdict(r) for r in [*runs, base]], indent=2))
        return
    by_scenario: dict[str, list[float | None]] = {}
    for run in runs:
        by_scenario.setdefault(run.scenario, []).append(run.recovered_s)
    for name, times in by_scenario.items():
        done = [t for t in times if t is not None]
        if len(done) < len(times):
            print(f"{name:48} {len(times) - len(done)} of {len(times)} runs not recovered within {args.bound:.0f} s")
            continue
        mid = statistics.median(done)
        if "popped" in name:
            ratio = "stock: lost for good"  # no stock figure to divide: RQ never re-queues such a job
        elif base.recovered_s is None:
            ratio = f"stock/mplab > {base.bound_s / mid:.0f}x"
        else:
            ratio = f"stock/mplab = {base.recovered_s / mid:.1f}x"
        print(f"{name:48} {mid:7.2f} s ({min(done):.2f}-{max(done):.2f}, n={len(done)})  {ratio}")
    took = f"{base.recovered_s:7.2f} s" if base.recovered_s is not None else f"> {base.bound_s:.0f} s (n=1)"
    print(f"{base.scenario:48} {took}")


if __name__ == "__main__":
    main()

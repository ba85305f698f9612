"""Enqueue throughput: mplab's submit path vs RQ's own `enqueue` one by one and `enqueue_many`, same run.

Run: .venv/bin/python benchmarks/enqueue.py [--jobs 2000] [--rounds 5]
Rounds are interleaved (each round runs every method once, in turn) against a private embedded
redis-server, flushed between methods; figures are medians with min-max. Says whether redis-py uses hiredis.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import redis
import redis.utils
from rq.queue import Queue
from rq.serializers import JSONSerializer

from tasks import cpu
from workers import client as jobclient
from workers.redis_server import embedded_redis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.jobs
    with embedded_redis() as server:
        client = redis.Redis.from_url(server.url)
        q = Queue("bench", connection=client, serializer=JSONSerializer)

        def mplab() -> None:
            jobclient.enqueue_many(
                client, "bench", jobclient.task_calls("tasks.cpu.trivial", [[i] for i in range(n)], 1)
            )

        def rq_many() -> None:
            datas = [Queue.prepare_data(cpu.trivial, args=[i]) for i in range(n)]
            with client.pipeline() as pipe:
                q.enqueue_many(datas, pipeline=pipe)
                pipe.execute()

        def rq_one_by_one() -> None:
            for i in range(n // 4):  # a quarter: it is slow, and the rate is what matters
                q.enqueue(cpu.trivial, i)

        methods: dict[str, tuple[Callable[[], None], int]] = {
            "mplab submit path": (mplab, n),
            "rq enqueue_many (1 pipeline)": (rq_many, n),
            "rq enqueue one by one": (rq_one_by_one, n // 4),
        }
        rates: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.rounds):
            for name, (fn, count) in methods.items():
                client.flushall()
                started = time.perf_counter()
                fn()
                rates[name].append(count / (time.perf_counter() - started))
        client.flushall()
        client.close()
    print(f"Python {platform.python_version()}, {os.cpu_count()} cores, hiredis {bool(redis.utils.HIREDIS_AVAILABLE)}, "
          f"{n} trivial jobs, {args.rounds} interleaved rounds (median, min-max)")  # fmt: skip
    ref = statistics.median(rates["rq enqueue_many (1 pipeline)"])
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"  {name:30} {med:9,.0f} jobs/s  ({min(values):,.0f}-{max(values):,.0f})  {med / ref:.2f}x enqueue_many")


if __name__ == "__main__":
    main()

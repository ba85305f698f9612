"""The chapter's CPU task as RQ jobs: what `mplab submit cpu` enqueues, and the summary it checks at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import redis
from rq.job import Job

from tasks import cpu
from tasks.registry import name_of
from workers import client as jobclient
from workers import defaults
from workers.errors import ConfigError

TASK = name_of(cpu.sum_squares)


def sum_squares_expected(n: int) -> int:
    """Closed form of sum(i*i for i in range(n)), to check every result cheaply."""
    return (n - 1) * n * (2 * n - 1) // 6 if n > 0 else 0


def check_cpu_args(tasks: int, size: int, batch: int) -> None:
    """Each argument within its documented range (ConfigError otherwise)."""
    for what, value, low, high in (
        ("--tasks", tasks, 1, defaults.MAX_TASKS),
        ("--size", size, 0, defaults.MAX_TASK_SIZE),
        ("--batch", batch, 1, defaults.MAX_BATCH_ITEMS),
    ):
        if not low <= value <= high:
            raise ConfigError(f"{what} must be >= {low} and <= {high}, got {value}")


def submit_cpu(
    client: redis.Redis,
    queue_name: str,
    tasks: int,
    size: int,
    batch: int,
    options: jobclient.JobOptions | None = None,
) -> list[Job]:
    """The chapter's CPU task, `tasks` times with n=`size`, as jobs on `queue_name` (one pipeline)."""
    check_cpu_args(tasks, size, batch)
    return jobclient.enqueue_many(client, queue_name, jobclient.task_calls(TASK, [[size]] * tasks, batch), options)


@dataclass(frozen=True)
class CpuSummary:
    """What a waited-for `submit cpu` came to, every value checked against the closed form."""

    queue: str
    size: int
    batch: int
    job_ids: list[str]
    wall_s: float
    tasks_done: int
    jobs: dict[str, int]
    tasks_per_node: dict[str, int]
    tasks_per_pid: dict[str, int]
    task_cpu_s: float
    wrong_results: int
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.wrong_results


def summarize(outcome: jobclient.Outcome, queue: str, size: int, batch: int) -> CpuSummary:
    """Per node/pid task counts, CPU time, and a check of every value against the closed form."""
    per_pid: Counter[str] = Counter()
    per_node: Counter[str] = Counter()
    cpu_s = 0.0
    wrong = 0
    expected = sum_squares_expected(size)
    for value in outcome.results.values():
        where = value.get("node") or value.get("host", "?")
        if "values" in value:  # a batch job
            wrong += sum(v != expected for v in value["values"])
            for pid, count in value["tasks_per_pid"].items():
                per_pid[f"{where}:{pid}"] += count
            per_node[where] += value["count"]
        else:
            wrong += value["value"] != expected
            per_pid[f"{where}:{value['pid']}"] += 1
            per_node[where] += 1
        cpu_s += value["cpu_s"]
    return CpuSummary(
        queue=queue,
        size=size,
        batch=batch,
        job_ids=[job.id for job in outcome.jobs],
        wall_s=round(outcome.wall_s, 4),
        tasks_done=outcome.tasks_done,
        jobs=dict(outcome.statuses),
        tasks_per_node=dict(per_node),
        tasks_per_pid=dict(per_pid),
        task_cpu_s=round(cpu_s, 4),
        wrong_results=wrong,
        failures=outcome.failures,
    )

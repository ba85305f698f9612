"""`mplab worker`: run a worker node in the foreground."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from cli.base import err_console, settings_of
from tasks import batch, catalog
from workers import defaults
from workers.lab.jobs import run_experiment
from workers.node import Node, check_options, check_queues, default_node_name
from workers.redis_server import redis_for
from workers.settings import parse_queues
from workers.tickets.node_job import buy

NODE_FUNCTIONS = catalog.TASKS.extended(batch.run_batch, run_experiment, buy)
"""The allow-list `mplab worker` gives its node: the tasks, batches of them, lab experiments, ticket buyers."""


def worker(
    ctx: typer.Context,
    pool: Annotated[
        int | None,
        typer.Option(
            "--pool", "-p", help=f"Job slots and Pool processes, 1..{defaults.MAX_POOL_SIZE}.", show_default="cores"
        ),
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues",
            "-q",
            help=f"Queues in priority order, comma-separated: up to {defaults.MAX_QUEUES} names of "
            f"up to {defaults.MAX_QUEUE_NAME} letters, digits, . _ - :.",
            show_default="high,default,low",
        ),
    ] = None,
    burst: Annotated[bool, typer.Option("--burst", help="Exit once the queues are empty.")] = False,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            help=f"Node name, unique per Redis: up to {defaults.MAX_NODE_NAME} letters, digits, . _ - : @.",
            show_default="HOST-PID",
        ),
    ] = None,
    grace: Annotated[
        float | None,
        typer.Option(
            "--grace",
            help=f"Seconds running jobs may finish after SIGTERM, 0..{defaults.MAX_GRACE:.0f}.",
            show_default=f"{defaults.GRACE_PERIOD:.0f}",
        ),
    ] = None,
    redis_timeout: Annotated[
        float,
        typer.Option(
            "--redis-timeout",
            help=f"Seconds the node rides out an unreachable Redis before it stops with exit code 1, "
            f"1..{defaults.MAX_REDIS_TIMEOUT:.0f}.",
        ),
    ] = defaults.REDIS_TIMEOUT,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every job (RQ's INFO log).")] = False,
) -> None:
    """Run a worker node: P warm slots execute jobs (no fork per job), a warm Pool(P) runs batch jobs.

    Stops on SIGTERM/Ctrl-C: running jobs get the grace period, then are re-queued; no child is left.
    """
    node_name = name if name is not None else default_node_name()
    check_options(  # before Settings, before any Redis
        node_name,
        pool if pool is not None else 1,
        grace if grace is not None else 0.0,
        redis_timeout,
    )
    settings = settings_of(ctx)
    changes: dict[str, object] = {}
    if pool is not None:
        changes["pool_size"] = pool
    if queues is not None:
        changes["queues"] = check_queues(parse_queues(queues))
    if grace is not None:
        changes["grace_period"] = grace
    settings = settings.with_(**changes)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")  # fmt: skip
    with redis_for(settings.redis_url, settings.state_dir, shared_for="a worker node") as (url, where):
        err_console.print(f"[dim]using {where}[/dim]")
        Node(settings, url, node_name, burst=burst, verbose=verbose, redis_timeout=redis_timeout,
             functions=NODE_FUNCTIONS).run()  # fmt: skip

"""The one settings object. Built only by the CLI (from options and environment); passed everywhere else."""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit

from workers import defaults
from workers.errors import ConfigError


class StartMethod(StrEnum):
    """How multiprocessing starts processes (a choice of the CLI's --start-method)."""

    fork = "fork"
    forkserver = "forkserver"
    spawn = "spawn"


START_METHODS = tuple(method.value for method in StartMethod)
QUEUE_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.:-]{{0,{defaults.MAX_QUEUE_NAME - 1}}}")
"""A queue name: 1-64 letters, digits and `_ . : -`, starting with a letter or digit (what a node accepts)."""


def default_pool_size() -> int:
    """Cores this process may run on (the size a Pool would pick), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or defaults.POOL_SIZE_FALLBACK


def default_start_method() -> str:
    """The platform's default start method (fork on Linux before Python 3.14, forkserver after)."""
    return mp.get_context().get_start_method()


def default_state_dir() -> Path:
    """Where `mplab redis up` leaves its state file."""
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "mplab"


@dataclass(frozen=True)
class Settings:
    """Everything configurable, validated once."""

    redis_url: str | None = None
    """Redis to use; None means the `mplab redis up` server if running, else an embedded one."""
    queues: tuple[str, ...] = defaults.QUEUES
    pool_size: int = field(default_factory=default_pool_size)
    start_method: str = field(default_factory=default_start_method)
    state_dir: Path = field(default_factory=default_state_dir)
    grace_period: float = defaults.GRACE_PERIOD

    def __post_init__(self) -> None:
        if not 1 <= self.pool_size <= defaults.MAX_POOL_SIZE:
            raise ConfigError(f"pool size must be >= 1 and <= {defaults.MAX_POOL_SIZE}, got {self.pool_size}")
        if self.start_method not in START_METHODS:
            raise ConfigError(f"start method must be one of {', '.join(START_METHODS)}, got {self.start_method!r}")
        if self.start_method not in mp.get_all_start_methods():
            raise ConfigError(f"start method {self.start_method!r} is not available on {sys.platform}")
        if not self.queues:
            raise ConfigError("queues must be non-empty names, got ''")
        for name in self.queues:
            check_queue_name(name)
        if not 0 <= self.grace_period <= defaults.MAX_GRACE:  # False for NaN too
            raise ConfigError(
                f"grace period must be >= 0 and <= {defaults.MAX_GRACE:g} seconds, got {self.grace_period}"
            )
        if self.redis_url is not None:
            check_redis_url(self.redis_url)

    @classmethod
    def from_options(
        cls,
        environ: Mapping[str, str],
        *,
        redis_url: str | None = None,
        queues: str | None = None,
        start_method: str | None = None,
        state_dir: Path | None = None,
    ) -> Settings:
        """Settings from the CLI's global options, and `environ` for what has no option (MPLAB_POOL)."""
        changes: dict[str, Any] = {"redis_url": redis_url or None}
        if queues is not None:
            changes["queues"] = parse_queues(queues)
        if start_method is not None:
            changes["start_method"] = start_method
        if state_dir is not None:
            changes["state_dir"] = state_dir
        pool_env = environ.get("MPLAB_POOL", "").strip()
        if pool_env:
            try:
                changes["pool_size"] = int(pool_env)
            except ValueError:
                raise ConfigError(f"MPLAB_POOL must be an integer, got {pool_env!r}") from None
        return cls(**changes)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def mp_context(self) -> mp.context.BaseContext:
        """The explicit multiprocessing context every engine uses."""
        return mp.get_context(self.start_method)

    def check_queue(self, name: str) -> str:
        """Return `name` if it is one of the configured queues, else raise ConfigError.

        Commands that may use any queue (submit, jobs, requeue, purge) call `check_queue_name` instead.
        """
        if name not in self.queues:
            raise ConfigError(f"unknown queue {name!r}; known queues: {', '.join(self.queues)}")
        return name


def check_queue_name(name: str) -> str:
    """Return `name` if it is a valid queue name, else raise ConfigError."""
    if not QUEUE_NAME.fullmatch(name):
        raise ConfigError(
            f"bad queue name {name[:80]!r}: 1-{defaults.MAX_QUEUE_NAME} letters, digits or _ . : - "
            "(starting with a letter or digit)"
        )
    return name


def check_redis_url(url: str) -> str:
    """Reject URLs redis-py cannot use, with a one-line reason."""
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"Redis URL must start with redis://, rediss:// or unix://, got {url!r}")
    return url


def parse_queues(text: str) -> tuple[str, ...]:
    """'high, default,low' -> ('high', 'default', 'low')."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ConfigError(f"no queue names in {text!r}")
    return names


class MachineFacts(TypedDict):
    """What every measurement states about where it ran (a JSON object as it is)."""

    python: str
    implementation: str
    start_method: str
    cores: int | None
    """os.cpu_count(): None if the platform cannot tell."""
    usable_cores: int
    """Cores this process may run on (its CPU affinity)."""
    platform: str
    machine: str
    host: str


def machine_facts(start_method: str) -> MachineFacts:
    """What every measurement states: Python, start method, cores, machine."""
    return MachineFacts(
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        start_method=start_method,
        cores=os.cpu_count(),
        usable_cores=default_pool_size(),
        platform=platform.platform(terse=True),
        machine=platform.machine(),
        host=socket.gethostname(),
    )

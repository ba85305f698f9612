"""The one settings object. Built only by the CLI (from options and environment); passed everywhere else."""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import socket
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from workers import defaults
from workers.errors import ConfigError

START_METHODS = ("fork", "forkserver", "spawn")


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
        if self.pool_size < 1:
            raise ConfigError(f"pool size must be >= 1, got {self.pool_size}")
        if self.start_method not in START_METHODS:
            raise ConfigError(f"start method must be one of {', '.join(START_METHODS)}, got {self.start_method!r}")
        if self.start_method not in mp.get_all_start_methods():
            raise ConfigError(f"start method {self.start_method!r} is not available on {sys.platform}")
        if not self.queues or any(not q or "," in q for q in self.queues):
            raise ConfigError(f"queues must be non-empty names, got {','.join(self.queues)!r}")
        if self.grace_period < 0:
            raise ConfigError(f"grace period must be >= 0 seconds, got {self.grace_period}")
        if self.redis_url is not None:
            check_redis_url(self.redis_url)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def mp_context(self) -> mp.context.BaseContext:
        """The explicit multiprocessing context every engine uses."""
        return mp.get_context(self.start_method)

    def check_queue(self, name: str) -> str:
        """Return `name` if it is one of the configured queues, else raise ConfigError."""
        if name not in self.queues:
            raise ConfigError(f"unknown queue {name!r}; known queues: {', '.join(self.queues)}")
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


def machine_facts(start_method: str) -> dict[str, Any]:
    """What every measurement states: Python, start method, cores, machine."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "start_method": start_method,
        "cores": os.cpu_count(),
        "usable_cores": default_pool_size(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "host": socket.gethostname(),
    }

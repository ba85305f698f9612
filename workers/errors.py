"""mplab's one error tree. Every failure a user can cause or meet is one of these; code raises leaves only.

LabError                      base (never raised itself): the CLI prints its message on one line
├── ConfigError               a setting or option is invalid (bad number, unknown queue, bad URL)   exit 2
├── RedisUnavailable          no Redis answers at the configured URL, or none can be started
├── NodeUnavailable           no live worker node can serve the work (nor ever will, e.g. private Redis)
├── NotFound                  a job, sale or experiment id that does not exist
├── InUse                     an action would pull a resource from under its users (redis down, live nodes)
├── TaskRefused               a job names a function that is not in mplab's task registry
│   └── UnknownTask           `tasks.registry.UnknownTask`, translated at the boundary
├── BadJob                    a job hash RQ cannot read (a corrupted or foreign field)
├── JobTimeout                jobs did not end before the caller's deadline
├── JobFailed                 a job ended failed, stopped or canceled (message: the reason's last line)
├── ExperimentFailed          an experiment could not produce its result
├── PayloadTooLarge           a job's payload, batch or result exceeds the limits (submit and node)
├── ResultMismatch            a benchmark mode computed a different answer than serial
└── Unsupported               the platform lacks what an experiment needs (e.g. os.fork)

Lower layers' exceptions (redis-py, the task registry) become leaves at one boundary: `map_errors()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class LabError(Exception):
    """Base of the tree: catch it, never raise it (raise a leaf)."""

    exit_code = 1


class ConfigError(LabError):
    """Raised when an option, environment variable or setting has an invalid value."""

    exit_code = 2


class RedisUnavailable(LabError):
    """Raised when Redis cannot be reached or an embedded redis-server cannot be started."""


class NodeUnavailable(LabError):
    """Raised when no live worker node serves the work and none could (e.g. a private embedded Redis)."""


class NotFound(LabError):
    """Raised when a job id, sale id or experiment name does not exist."""


class InUse(LabError):
    """Raised when an action would pull a resource from under its users (e.g. `redis down` with live nodes)."""


class TaskRefused(LabError):
    """Raised when a job's function is not registered in `tasks` (it is never executed)."""


class UnknownTask(TaskRefused):
    """Raised when a task name is not in the registry (translated from `tasks.registry.UnknownTask`)."""


class BadJob(LabError):
    """Raised when a job's hash cannot be read by RQ (a corrupted or foreign field): it is shown, never run."""


class JobTimeout(LabError):
    """Raised when jobs have not ended by the caller's deadline (they may still run later)."""


class JobFailed(LabError):
    """Raised when a job a caller waited for ended failed, stopped or canceled."""


class ExperimentFailed(LabError):
    """Raised when an experiment could not produce its result (a child died, a probe failed)."""


class PayloadTooLarge(LabError):
    """Raised when a job's payload, batch size or result exceeds the limits in `workers.defaults`."""


class ResultMismatch(LabError):
    """Raised when a parallel mode's results differ from the serial reference."""


class Unsupported(LabError):
    """Raised when this platform or Python lacks a feature an experiment needs."""


@contextlib.contextmanager
def map_errors(where: str = "Redis") -> Iterator[None]:
    """Translate lower layers' exceptions into leaves of this tree (httpx `map_exceptions` style)."""
    import redis

    from tasks.registry import UnknownTask as RegistryUnknownTask

    try:
        yield
    except LabError:
        raise
    except RegistryUnknownTask as exc:
        raise UnknownTask(str(exc)) from exc
    except redis.AuthenticationError as exc:
        raise RedisUnavailable(f"{where} refused the credentials: {exc}") from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailable(f"lost the connection to {where}: {exc}") from exc
    except redis.ResponseError as exc:
        raise RedisUnavailable(f"{where} answered with an error: {exc}") from exc

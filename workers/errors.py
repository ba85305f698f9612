"""mplab's one error tree. Every failure a user can cause or meet is one of these.

LabError                      base: the CLI prints its message on one line, exit code 1
├── ConfigError               a setting or option is invalid (bad number, unknown queue, bad URL)
├── RedisUnavailable          no Redis answers at the configured URL, or none can be started
├── NodeUnavailable           no live worker node can serve the work (nor ever will, e.g. private Redis)
├── NotFound                  a job, sale or experiment id that does not exist
├── TaskRefused               a job names a function that is not in mplab's task registry
├── JobTimeout                jobs did not end before the caller's deadline
├── JobFailed                 a job ended failed, stopped or canceled (message: the reason's last line)
├── ResultMismatch            a benchmark mode computed a different answer than serial
├── Unsupported               the platform lacks what an experiment needs (e.g. os.fork)
└── PayloadTooLarge           a job's payload, batch or result exceeds the node's limits
"""

from __future__ import annotations


class LabError(Exception):
    """Raised for any failure mplab reports to a user as one line."""

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


class TaskRefused(LabError):
    """Raised when a job's function is not registered in `tasks` (it is never executed)."""


class JobTimeout(LabError):
    """Raised when jobs have not ended by the caller's deadline (they may still run later)."""


class JobFailed(LabError):
    """Raised when a job a caller waited for ended failed, stopped or canceled."""


class ResultMismatch(LabError):
    """Raised when a parallel mode's results differ from the serial reference."""


class Unsupported(LabError):
    """Raised when this platform or Python lacks a feature an experiment needs."""


class PayloadTooLarge(LabError):
    """Raised when a job's payload, batch size or result exceeds the limits in `workers.defaults`."""

"""Defaults in one place, each with what it is and its unit."""

from __future__ import annotations

QUEUES: tuple[str, ...] = ("high", "default", "low")
"""Queue names in priority order: a node drains `high` before `default` before `low`."""

POOL_SIZE_FALLBACK = 2
"""Slots (and Pool processes) per node when the core count cannot be read."""

HEARTBEAT_INTERVAL = 2.0
"""Seconds between a node's heartbeats (CPU %, RSS, slots) written to Redis."""

HEARTBEAT_TTL = 10
"""Seconds a node's heartbeat key lives; a node silent for longer is gone from `status`."""

STALE_AFTER = 3 * HEARTBEAT_INTERVAL
"""Seconds after which `status` marks a node whose heartbeat has not been renewed as stale."""

GRACE_PERIOD = 30.0
"""Seconds a stopping node lets running jobs finish before it re-queues them and exits."""

JOB_TIMEOUT = 600
"""Seconds an RQ job may run before it is failed (RQ's job timeout)."""

RESULT_TTL = 3600
"""Seconds a finished job's result is kept in Redis."""

BATCH_CHUNKSIZE = 0
"""Tasks per Pool chunk for batch jobs; 0 means automatic (len / (4 * pool size))."""

PROGRESS_INTERVAL = 0.1
"""Minimum seconds between two `job.meta` progress writes for one batch job."""

REDIS_START_TIMEOUT = 10.0
"""Seconds to wait for an embedded redis-server to answer PING."""

NODE_KEY_PREFIX = "mplab:node:"
"""Redis key prefix of node heartbeat hashes."""

NODES_SET = "mplab:nodes"
"""Redis set of node names that have sent a heartbeat."""

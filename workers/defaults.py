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

# -- node resilience (issue 8) ---------------------------------------------------------------------

REDIS_TIMEOUT = 120.0
"""Seconds a node keeps running with Redis unreachable before it stops (exit 1); outages up to 60 s are ridden out."""

REDIS_RETRY_INTERVAL = 0.5
"""Seconds between two attempts of a slot to record a job (start, result, failure) while Redis is unreachable."""

REDIS_BACKOFF_MAX = 1.0
"""Cap, in seconds, on RQ's reconnection backoff when a slot cannot dequeue (RQ's own cap is 60 s)."""

SLOT_KEY_PREFIX = "mplab:slot:"
"""Redis key prefix of a slot's liveness key (TTL HEARTBEAT_TTL), renewed every HEARTBEAT_INTERVAL by the slot."""

CLAIM_KEY_PREFIX = "mplab:claim:"
"""Redis key prefix marking an execution as settled (result written, or re-queued): first writer wins."""

CLAIM_TTL = 24 * 3600
"""Seconds an execution's claim key is kept (longer than any job may run)."""

SWEEP_INTERVAL = 2.0
"""Seconds between two abandoned-job sweeps on every live node (a timer, never per job)."""

NODE_SOCKET_TIMEOUT = 10.0
"""Seconds a node's main loop waits for any Redis reply (it never blocks on purpose; a silent connection
must not stop its heartbeat, sweep and batch desk)."""

POISON_LIMIT = 3
"""Node or slot deaths a job may be running during before it is failed as poison instead of re-queued."""

POOL_DEATH_LIMIT = 1
"""Times a batch is re-queued after a Pool process died under it; the next death fails it."""

SLOT_RESTART_MAX_DELAY = 8.0
"""Upper bound, in seconds, of the growing delay before a node restarts a slot that keeps dying."""

MAX_POOL_SIZE = 256
"""Largest `worker --pool` accepted (slots and Pool processes per node)."""

MAX_GRACE = 3600.0
"""Largest `worker --grace` accepted, in seconds."""

MAX_REDIS_TIMEOUT = 86400.0
"""Largest `worker --redis-timeout` accepted, in seconds (the smallest is 1)."""

MAX_NODE_NAME = 100
"""Longest node name accepted, in characters (letters, digits and . _ - : @ only)."""

MAX_QUEUES = 16
"""Most queues one node serves (`worker --queues`)."""

MAX_QUEUE_NAME = 64
"""Longest queue name a node accepts, in characters (letters, digits and . _ - : only)."""

MAX_BATCH_ITEMS = 100_000
"""Most tasks one batch job may carry (checked at submit and again by the node)."""

MAX_PAYLOAD_BYTES = 8 * 2**20
"""Largest serialized job payload (function name and arguments) a node accepts, in bytes."""

MAX_RESULT_BYTES = 32 * 2**20
"""Largest serialized batch result a node writes back to Redis, in bytes."""

# -- submit / status / jobs limits (issue 8): every option of the job client's commands has a finite range --
MAX_TASKS = 100_000
"""Most tasks one `submit` may enqueue."""

MAX_TASK_SIZE = 10**9
"""Largest n of the CPU task sum(i*i for i in range(n)) (~30 s of one core; 10**12 would take hours)."""

MAX_JOB_TIMEOUT = 86_400
"""Longest job timeout a submit may ask for, in seconds (one day)."""

MAX_RESULT_TTL = 30 * 86_400
"""Longest a result may be kept, in seconds (30 days)."""

MAX_RETRIES = 10
"""Most automatic retries of a failed job (RQ's Retry)."""

MAX_RETRY_INTERVAL = 3_600
"""Longest pause between two retries, in seconds."""

MAX_WAIT = 86_400
"""Longest `--timeout` a waiting command may take, in seconds (one day)."""

WAIT_TIMEOUT = 600
"""Seconds `submit --wait` waits for its jobs by default."""

MAX_LIST = 10_000
"""Most jobs `mplab jobs` lists in one call."""

WATCH_INTERVAL = 1.0
"""Seconds between two refreshes of `mplab status --watch`."""

"""Every node option has a finite, documented range; a bad value is one line (ConfigError, exit 2) that
never echoes raw input (a newline or console markup in a name must not reach the terminal as such)."""

from __future__ import annotations

import math

import pytest

from workers import defaults
from workers.errors import ConfigError
from workers.node import check_options, check_queues

GOOD = {"name": "host-1.a_b:c@d", "pool_size": 2, "grace": 30.0, "redis_timeout": 120.0}


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"pool_size": 0}, "pool size must be >= 1"),
        ({"pool_size": defaults.MAX_POOL_SIZE + 1}, f"<= {defaults.MAX_POOL_SIZE}"),
        ({"grace": math.nan}, "grace period must be 0..3600"),
        ({"grace": math.inf}, "grace period"),
        ({"grace": -1.0}, "grace period"),
        ({"redis_timeout": math.nan}, "Redis timeout must be 1..86400"),
        ({"redis_timeout": 0.5}, "Redis timeout"),
        ({"name": "a\nb"}, "got character '\\n' at position 1"),
        ({"name": ""}, "got an empty name"),
        ({"name": "[/bold]x"}, "got character '[' at position 0"),
        ({"name": "x" * (defaults.MAX_NODE_NAME + 1)}, f"got {defaults.MAX_NODE_NAME + 1} characters"),
    ],
)
def test_out_of_range_node_options_are_refused(change, needle):
    with pytest.raises(ConfigError) as refused:
        check_options(**{**GOOD, **change})
    message = str(refused.value)
    assert needle in message and "\n" not in message and "[/bold]" not in message
    assert refused.value.exit_code == 2


def test_in_range_node_options_pass():
    check_options(**GOOD)
    check_options(**{**GOOD, "pool_size": defaults.MAX_POOL_SIZE, "grace": 0.0, "redis_timeout": 1.0})


def test_queue_names_are_plain_and_few():
    assert check_queues(("high", "default", "low", "compare-ab12_3:x")) == (
        "high",
        "default",
        "low",
        "compare-ab12_3:x",
    )
    for bad in (("../../etc/passwd",), ("a b",), ("x" * (defaults.MAX_QUEUE_NAME + 1),), ("q",) * 17):
        with pytest.raises(ConfigError):
            check_queues(bad)

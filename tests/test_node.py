"""workers/node.py's pure parts: what a bad node name or queue name is told (without echoing it), and the
exact edges of every option's range. (The node's processes are test_node_integration/chaos/outage's.)"""

from __future__ import annotations

import math
import re

import pytest

from workers import defaults
from workers.errors import ConfigError
from workers.node import NODE_NAME, QUEUE_NAME, _what_is_wrong, check_options, check_queues, default_node_name

ANY_NODE_CHAR = re.compile(r"[A-Za-z0-9._:@-]")


@pytest.mark.parametrize(
    ("text", "pattern", "said"),
    [
        ("", QUEUE_NAME, "got an empty name"),
        ("x" * 65, QUEUE_NAME, "got 65 characters"),
        ("ab c d", QUEUE_NAME, "got character ' ' at position 2"),  # the first bad one
        ("q\x1b[31m", QUEUE_NAME, "got character '\\x1b' at position 1"),  # escapes, never the raw byte
        ("café", QUEUE_NAME, "got character '\\xe9' at position 3"),
        ("-lead", ANY_NODE_CHAR, "got character '-' at position 0"),  # each char fine, the start is not
    ],
)
def test_what_is_wrong_names_the_fault_not_the_text(text, pattern, said) -> None:
    assert _what_is_wrong(text, pattern, 64) == said
    assert said.isascii() and "\n" not in said and "\x1b" not in said


def test_a_too_long_name_is_told_by_its_length_before_its_characters() -> None:
    assert _what_is_wrong("\n" * 200, QUEUE_NAME, 64) == "got 200 characters"


@pytest.mark.parametrize("name", ["a", "9", "host-1.a_b:c@d", "x" * defaults.MAX_NODE_NAME, default_node_name()])
def test_node_names_up_to_the_limit_are_accepted(name) -> None:
    check_options(name, 1, 0.0, 1.0)
    assert NODE_NAME.fullmatch(name)


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("-x", "got character '-' at position 0"),
        ("@x", "got character '@' at position 0"),
        ("a/b", "got character '/' at position 1"),
        ("x" * (defaults.MAX_NODE_NAME + 1), f"got {defaults.MAX_NODE_NAME + 1} characters"),
    ],
)
def test_node_names_out_of_shape_are_refused_with_the_reason(name, said) -> None:
    with pytest.raises(ConfigError, match=re.escape(said)):
        check_options(name, 1, 0.0, 1.0)


@pytest.mark.parametrize(
    ("pool_size", "grace", "redis_timeout", "ok"),
    [
        (1, 0.0, 1.0, True),
        (defaults.MAX_POOL_SIZE, defaults.MAX_GRACE, defaults.MAX_REDIS_TIMEOUT, True),
        (0, 0.0, 1.0, False),
        (defaults.MAX_POOL_SIZE + 1, 0.0, 1.0, False),
        (1, -0.001, 1.0, False),
        (1, defaults.MAX_GRACE + 0.001, 1.0, False),
        (1, -math.inf, 1.0, False),
        (1, 0.0, 0.999, False),
        (1, 0.0, defaults.MAX_REDIS_TIMEOUT + 1, False),
        (1, 0.0, math.inf, False),
        (1, 0.0, math.nan, False),
    ],
)
def test_option_ranges_are_closed_at_both_documented_ends(pool_size, grace, redis_timeout, ok) -> None:
    if ok:
        check_options("n", pool_size, grace, redis_timeout)
    else:
        with pytest.raises(ConfigError):
            check_options("n", pool_size, grace, redis_timeout)


def test_up_to_max_queues_of_up_to_max_length_are_served() -> None:
    most = tuple(f"{i:x}".rjust(defaults.MAX_QUEUE_NAME, "q") for i in range(defaults.MAX_QUEUES))
    assert check_queues(most) == most
    with pytest.raises(ConfigError, match=f"at most {defaults.MAX_QUEUES} queues, got {defaults.MAX_QUEUES + 1}"):
        check_queues((*most, "one-more"))
    with pytest.raises(ConfigError, match=f"got {defaults.MAX_QUEUE_NAME + 1} characters"):
        check_queues(("q" * (defaults.MAX_QUEUE_NAME + 1),))
    with pytest.raises(ConfigError, match="got an empty name"):
        check_queues(("default", ""))


# -- what a bad option is told: one line that never echoes raw input (newlines, console markup) --------
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

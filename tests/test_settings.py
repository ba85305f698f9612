"""workers/settings.py: the one settings object, its checks and queue names."""

from __future__ import annotations

import pytest

from workers.errors import ConfigError
from workers.settings import Settings, check_queue_name, parse_queues


# -- settings ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"pool_size": 0}, "pool size must be >= 1"),
        ({"start_method": "vfork"}, "start method must be one of"),
        ({"redis_url": "http://x"}, "Redis URL must start with"),
        ({"grace_period": -1}, "grace period"),
        ({"queues": ()}, "queues must be non-empty"),
    ],
)
def test_settings_reject_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        Settings(**changes)


def test_settings_queue_check_and_context():
    settings = Settings(queues=parse_queues("high, default,low"), start_method="spawn")
    assert settings.queues == ("high", "default", "low")
    assert settings.check_queue("low") == "low"
    with pytest.raises(ConfigError, match="unknown queue 'urgent'"):
        settings.check_queue("urgent")
    assert settings.mp_context().get_start_method() == "spawn"


def test_settings_from_options_reads_mplab_pool_from_the_given_environment():
    assert Settings.from_options({"MPLAB_POOL": "3"}).pool_size == 3
    assert Settings.from_options({}, queues="a,b").queues == ("a", "b")
    with pytest.raises(ConfigError, match="MPLAB_POOL must be an integer"):
        Settings.from_options({"MPLAB_POOL": "many"})
    with pytest.raises(ConfigError, match="pool size must be >= 1 and <= 256"):
        Settings.from_options({"MPLAB_POOL": "10000"})


@pytest.mark.parametrize("name", ["", "a b", "../x", "x" * 65, "q,r", "-lead"])
def test_bad_queue_names_are_refused(name):
    with pytest.raises(ConfigError, match="bad queue name"):
        check_queue_name(name)


def test_any_valid_queue_name_is_accepted():
    assert check_queue_name("urgent.jobs:v2") == "urgent.jobs:v2"

"""Settings come from WORKER_* variables; a bad value is an error naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.durations import parse_duration
from service.errors import SettingsError
from service.settings import load_settings


def test_defaults_are_the_embedded_store_and_documented_values():
    settings = load_settings({})
    assert settings.database_url is None
    assert settings.data_dir == Path("./longshore-data")
    assert settings.concurrency == 8
    assert settings.lease_seconds == 30.0
    assert settings.effective_heartbeat_seconds == 10.0
    assert settings.admin_default_queue == "default"


def test_values_are_read_from_worker_variables():
    settings = load_settings(
        {
            "WORKER_CONCURRENCY": "3",
            "WORKER_LEASE_SECONDS": "1m",
            "WORKER_ADMIN_QUEUE_WEIGHTS": "fast=3, bulk=1",
            "WORKER_QUEUE_CONCURRENCY": "serial=1",
            "WORKER_LOG_LEVEL": "debug",
            "OTHER_THING": "ignored",
        }
    )
    assert settings.concurrency == 3
    assert settings.lease_seconds == 60.0
    assert settings.admin_queue_weights == {"fast": 3, "bulk": 1}
    assert settings.queue_concurrency == {"serial": 1}
    assert settings.log_level == "DEBUG"


def test_flags_override_the_environment():
    settings = load_settings({"WORKER_CONCURRENCY": "3"}, concurrency=5)
    assert settings.concurrency == 5


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY"),
        ({"WORKER_CONCURRENCY": "many"}, "WORKER_CONCURRENCY"),
        ({"WORKER_LEASE_SECONDS": "5 parsecs"}, "WORKER_LEASE_SECONDS"),
        ({"WORKER_LEASE_SECONDS": "0.1"}, "WORKER_LEASE_SECONDS"),
        ({"WORKER_ADMIN_QUEUE_WEIGHTS": "a=3,b"}, "WORKER_ADMIN_QUEUE_WEIGHTS"),
        ({"WORKER_ADMIN_QUEUE_WEIGHTS": "a=0"}, "WORKER_ADMIN_QUEUE_WEIGHTS"),
        ({"WORKER_ADMIN_QUEUE_WEIGHTS": "bad name=2"}, "WORKER_ADMIN_QUEUE_WEIGHTS"),
        ({"WORKER_QUEUE_CONCURRENCY": "q=0"}, "WORKER_QUEUE_CONCURRENCY"),
        ({"WORKER_ADMIN_DEFAULT_QUEUE": "no spaces"}, "WORKER_ADMIN_DEFAULT_QUEUE"),
        ({"WORKER_LOG_LEVEL": "loud"}, "WORKER_LOG_LEVEL"),
        ({"WORKER_LOG_FORMAT": "xml"}, "WORKER_LOG_FORMAT"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(env, named):
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value).startswith(named + ":")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("0.5", 0.5),
        ("30s", 30.0),
        ("15m", 900.0),
        ("168h", 604800.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("2d", 172800.0),
        (" 10S ", 10.0),
    ],
)
def test_durations_accept_numbers_and_units(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "10x", "1h 30m", "-5s", "inf", "nan", "5s5"])
def test_durations_reject_anything_else(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)

"""The CLI turns command-line text into tasks, refusing bad input before any write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.backends import resolve_target
from service.cli.tasks import parse_payload, parse_run_at
from service.errors import SettingsError
from service.settings import load_settings
from store.errors import InvalidTask

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_payload_must_be_a_json_object():
    assert parse_payload('{"seconds": 1}') == {"seconds": 1}
    with pytest.raises(InvalidTask, match="not valid JSON"):
        parse_payload("{seconds: 1}")
    with pytest.raises(InvalidTask, match="JSON object, got list"):
        parse_payload("[1, 2]")


def test_run_at_accepts_iso_now_and_relative_times():
    assert parse_run_at("now", NOW) == NOW
    assert parse_run_at("+90s", NOW) == NOW + timedelta(seconds=90)
    assert parse_run_at("2026-06-01T09:00:00Z", NOW) == datetime(2026, 6, 1, 9, tzinfo=UTC)
    naive = parse_run_at("2026-06-01T09:00:00", NOW)
    assert naive.tzinfo is UTC


@pytest.mark.parametrize("text", ["tomorrow", "2026-13-01", "+5 parsecs", "12:00 PM"])
def test_a_malformed_run_at_is_refused(text):
    with pytest.raises(InvalidTask, match="run-at"):
        parse_run_at(text, NOW)


def test_database_urls_pick_the_backend_and_never_show_a_password():
    embedded, path = resolve_target(load_settings({"WORKER_DATA_DIR": "/srv/ls"}))
    assert (embedded.backend, path) == ("sqlite", "/srv/ls/longshore.db")
    target, url = resolve_target(
        load_settings({"WORKER_DATABASE_URL": "postgresql://u:hunter2@db:6543/jobs"})
    )
    assert target.backend == "postgres"
    assert url.endswith("/jobs")
    assert "hunter2" not in target.location
    assert target.location == "postgresql://db:6543/jobs"
    lite, lite_path = resolve_target(load_settings({"WORKER_DATABASE_URL": "sqlite:///x/y.db"}))
    assert (lite.backend, lite_path) == ("sqlite", "/x/y.db")
    with pytest.raises(SettingsError, match="WORKER_DATABASE_URL"):
        resolve_target(load_settings({"WORKER_DATABASE_URL": "mysql://db/x"}))

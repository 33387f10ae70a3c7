"""``longshore serve`` runs tasks on the embedded store and stops cleanly; ``migrate`` is
idempotent."""

from __future__ import annotations

import signal

import pytest

from tests.acceptance.conftest import Longshore, wait_until

only_embedded = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.mark.slow
@only_embedded
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_runs_tasks_on_the_embedded_store_and_stops_cleanly_on_a_signal(
    longshore: Longshore, tmp_path, stop_signal: signal.Signals
):
    longshore.ok("tasks", "enqueue", "builtin.noop", "--count", "10")
    longshore.ok(
        "tasks", "enqueue", "builtin.sleep", "--count", "2", "--payload", '{"seconds": 600}'
    )

    server = longshore.start(
        "serve",
        "--concurrency",
        "4",
        name="serve",
        env={"WORKER_SHUTDOWN_GRACE_SECONDS": "1"},
    )

    def short_ones_done_long_ones_running() -> bool:
        server.assert_running()
        stats = longshore.stats()
        return stats["completed"] == 10 and stats["running"] == 2

    wait_until(short_ones_done_long_ones_running, "serve runs the enqueued tasks")
    assert (tmp_path / "data" / "longshore.db").is_file(), (
        "the embedded store is not in the data dir"
    )

    server.signal(stop_signal)
    assert server.wait(timeout=30) == 0, server.output()

    stats = longshore.stats()
    # The two long sleeps were given back, ready for the next start; nothing is left running.
    assert (stats["running"], stats["ready"], stats["completed"], stats["dead"]) == (0, 2, 10, 0)
    assert longshore.json("tasks", "list", "--state", "running")["tasks"] == []
    given_back = longshore.json("tasks", "list", "--state", "ready")["tasks"]
    assert [task["attempts"] for task in given_back] == [0, 0]


def test_migrate_applies_migrations_once_then_reports_up_to_date(longshore: Longshore):
    first = longshore.ok("migrate")
    assert "applied migrations" in first, first
    second = longshore.ok("migrate")
    assert "up to date" in second, second
    assert "applied" not in second, second
    # The migrated store is usable.
    longshore.ok("tasks", "enqueue", "builtin.noop")
    assert longshore.stats()["ready"] == 1

"""Seed 004's task actions and maintenance from the command line, through a running
``longshore serve`` (its admin API, roles and audit log), plus the dead-letter and schedule
previews."""

from __future__ import annotations

import json

import pytest

from tests.acceptance.conftest import Longshore
from tests.acceptance.test_dlq_cli import dead_letter_one
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening


def later(longshore: Longshore, *args: str) -> int:
    """Enqueue a ``builtin.noop`` task an hour from now (the serving worker leaves it)."""
    enqueued = longshore.json("tasks", "enqueue", "builtin.noop", "--run-at", "+1h", *args)
    return int(enqueued["task"]["id"])


@pytest.mark.slow
def test_task_actions_maintenance_and_previews_through_the_api(longshore: Longshore) -> None:
    dead = dead_letter_one(longshore)
    port = free_port()
    api = {
        "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
        "WORKER_ADMIN_TOKEN": "ops:s3cret-0123456789-abcdefgh",
        "WORKER_ADMIN_ROLES": "ops=admin",
    }
    longshore.env.update(api)
    serve = start_serve(longshore, "serve", api)
    try:
        wait_listening(serve, port)

        first = later(longshore)
        done = longshore.json("tasks", "complete", str(first))
        assert (done["previousState"], done["state"]) == ("scheduled", "done")
        assert longshore.run("tasks", "show", str(first)).returncode != 0

        second = later(longshore)
        out = longshore.ok("tasks", "fail", str(second), "--reason", "not needed")
        assert f"task {second}: scheduled -> dead" in out, out
        assert longshore.json("tasks", "show", str(second))["lastError"] == "not needed"

        third = later(longshore, "--queue", "later")
        moved = longshore.json(
            "tasks", "reschedule", str(third), "--priority", "-5", "--max-attempts", "9"
        )
        assert (moved["task"]["priority"], moved["task"]["maxAttempts"]) == (-5, 9)
        refused = longshore.run("tasks", "reschedule", str(third))
        assert refused.returncode != 0
        assert "at least one" in refused.stderr
        refused = longshore.run("tasks", "reschedule", str(third), "--attempts", "9")
        assert refused.returncode != 0
        assert "attempts" in refused.stderr
        assert "400" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert "scheduled -> ready" in longshore.ok("tasks", "run-now", str(third))

        keyed = later(longshore, "--key", "nightly-report")
        removed = longshore.json("tasks", "remove", "--key", "nightly-report")
        assert (removed["taskId"], removed["state"]) == (str(keyed), "removed")
        missing = longshore.run("tasks", "complete", "999999")
        assert missing.returncode != 0
        assert "404" in missing.stderr

        # The dead-letter previews, on the API and on the database, change nothing.
        preview = longshore.json("dlq", "replay", "--all", "--dry-run", "--api")
        assert preview["byQueue"] == {"reports": 1, "default": 1}
        assert "this replays 1 task(s) (1 of queue reports)" in longshore.ok(
            "dlq", "replay", str(dead), "--dry-run"
        )
        purge = longshore.json("dlq", "purge", "--older-than", "0s", "--dry-run", "--api")
        assert purge["total"] == 2
        assert longshore.json("dlq", "stats")["total"] == 2

        swept = longshore.json("maintenance", "sweep-stale-workers", "--dry-run")
        assert swept["dryRun"] is True
        assert swept["workers"] == []
        unlocked = longshore.json("maintenance", "force-unlock", "gone-worker")
        assert unlocked == {"released": 0, "byWorker": {}}
        cleaned = longshore.json("maintenance", "cleanup", "--only", "empty-queues")
        assert cleaned["tasks"] == ["empty-queues"]

        times = longshore.json(
            "schedules", "preview", "0 6 * * *", "--timezone", "Asia/Tokyo", "--count", "2"
        )["fireTimes"]
        assert [t["at"][11:] for t in times] == ["06:00:00+09:00", "06:00:00+09:00"]
        assert all(t["atUtc"].endswith("T21:00:00Z") for t in times)

        audit = [
            json.loads(line)
            for line in longshore.ok("audit", "export", "--format", "jsonl").splitlines()
        ]
        seen = {(row["actor"], row["action"], row["status"]) for row in audit}
        for action in (
            "task.complete",
            "task.fail",
            "task.reschedule",
            "task.run_now",
            "task.remove",
            "dlq.replay",
            "dlq.purge",
            "maintenance.sweep_stale_workers",
            "maintenance.force_unlock",
            "maintenance.cleanup",
        ):
            assert ("ops", action, "ok") in seen, action
        assert ("ops", "task.reschedule", "error") in seen
    finally:
        stop(serve)

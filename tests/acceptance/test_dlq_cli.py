"""The dead-letter queue from the command line: list, show, replay, delete, purge."""

from __future__ import annotations

import json

import pytest

from tests.acceptance.conftest import Longshore

FAIL_FOR_GOOD = json.dumps({"message": "the report source is gone", "permanent": True})


def dead_letter_one(longshore: Longshore) -> int:
    """Enqueue a task that fails permanently, run it, and return its id."""
    task_id = longshore.json(
        "tasks", "enqueue", "builtin.fail", "--payload", FAIL_FOR_GOOD, "--queue", "reports"
    )["task"]["id"]
    drained = longshore.run("worker", "--drain")
    assert drained.returncode == 0, drained.stderr
    return int(task_id)


@pytest.mark.slow
def test_a_dead_task_can_be_listed_shown_replayed_deleted_and_purged(longshore: Longshore):
    task_id = dead_letter_one(longshore)

    listed = longshore.json("dlq", "list")
    assert listed["total"] == 1
    [entry] = listed["entries"]
    assert entry["id"] == task_id
    assert entry["queue"] == "reports"
    assert entry["handler"] == "builtin.fail"
    assert "the report source is gone" in entry["lastError"]
    assert entry["attempts"] == 1

    shown = longshore.json("dlq", "show", str(task_id))
    assert shown["state"] == "dead"
    assert shown["payload"] == json.loads(FAIL_FOR_GOOD)
    assert shown["deadAt"] is not None
    assert longshore.json("dlq", "stats")["byQueue"] == {"reports": 1}

    replayed = longshore.json("dlq", "replay", str(task_id))
    assert replayed["replayed"] == [task_id]
    ready = longshore.json("tasks", "show", str(task_id))
    assert ready["state"] == "ready"
    assert ready["attempts"] == 0
    assert ready["replayCount"] == 1
    assert ready["replayedBy"]
    assert longshore.json("dlq", "list")["total"] == 0

    # It fails again (the handler has not changed) and is dead once more; then delete it.
    assert longshore.run("worker", "--drain").returncode == 0
    assert longshore.json("dlq", "list")["total"] == 1
    longshore.ok("dlq", "delete", str(task_id))
    assert longshore.json("dlq", "list")["total"] == 0
    assert longshore.run("tasks", "show", str(task_id)).returncode != 0

    # Purge removes every dead task older than the given age.
    dead_letter_one(longshore)
    dead_letter_one(longshore)
    assert longshore.json("dlq", "list")["total"] == 2
    purged = longshore.ok("dlq", "purge", "--older-than", "0s")
    assert "purged 2" in purged, purged
    assert longshore.json("dlq", "list")["total"] == 0
    assert longshore.json("tasks", "list")["total"] == 0


def test_replaying_a_task_that_is_not_dead_is_refused(longshore: Longshore):
    task_id = longshore.json("tasks", "enqueue", "builtin.noop")["task"]["id"]
    proc = longshore.run("dlq", "replay", str(task_id))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert str(task_id) in proc.stderr
    assert longshore.json("tasks", "show", str(task_id))["state"] == "ready"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_list_show_and_replay_also_go_through_the_admin_api(longshore: Longshore):
    from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening

    task_id = dead_letter_one(longshore)
    port = free_port()
    api = {
        "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
        "WORKER_ADMIN_TOKEN": "ops:s3cret-0123456789-abcdefgh",
        "WORKER_ADMIN_ROLES": "ops=operator",  # a named token is a viewer unless mapped
    }
    longshore.env.update(api)
    serve = start_serve(longshore, "serve", api)
    try:
        wait_listening(serve, port)
        listed = longshore.json("dlq", "list", "--api")
        assert [entry["id"] for entry in listed["entries"]] == [str(task_id)]
        shown = longshore.json("dlq", "show", str(task_id), "--api")
        assert shown["handler"] == "builtin.fail"
        assert longshore.json("dlq", "replay", str(task_id), "--api")["replayed"] == [task_id]
        refused = longshore.run("dlq", "show", "999999", "--api")
        assert refused.returncode != 0
        assert "404" in refused.stderr
        assert "Traceback" not in refused.stderr
        audit = [
            json.loads(line)
            for line in longshore.ok("audit", "export", "--format", "jsonl").splitlines()
        ]
        assert ("ops", "dlq.replay_ids", "ok") in {
            (row["actor"], row["action"], row["status"]) for row in audit
        }
    finally:
        stop(serve)

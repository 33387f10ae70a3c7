"""Seed 004's task actions, maintenance operations, the dead-letter impact preview and the
schedule preview, over the admin API on a real task queue (SQLite and PostgreSQL) and a real
event store: results, bad input (400/404/409, never 500), roles and audit entries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from store.queue.models import NewTask, TaskState, WorkerInfo
from tests.integration.admin_harness import full_admin
from tests.integration.test_admin_api import (
    ADMIN,
    OPERATOR,
    VIEWER,
    Admin,
    _admin,
    assert_envelope,
)


@pytest.fixture
async def admin(queue: Any, tmp_path: Path) -> AsyncIterator[Admin]:
    async for value in _admin(queue, tmp_path):
        yield value


async def enqueue(admin: Admin, **fields: Any) -> int:
    fields.setdefault("handler", "send_email")
    return int((await admin.queue.enqueue(NewTask(**fields))).task.id)


async def audited(admin: Admin, action: str) -> list[tuple[str, str, str, str]]:
    """``(status, target, actor, detail)`` of the entries of ``action``, oldest first."""
    entries = await admin.audit_entries(action=action)
    return [(e.status.value, e.target, e.actor, e.detail) for e in reversed(entries)]


NIGHTLY = {
    "name": "nightly",
    "source": "git_tag",
    "repo": "https://git.example.com/team/jobs.git",
    "tag": "v1",
}
"""A job whose runs' tasks the tests act on (never run: no worker serves its queue)."""
GIT_SETTINGS = {"job_repo_allowlist": ("https://git.example.com/team/",)}


# --- task actions ---------------------------------------------------------------------------


async def test_complete_deletes_a_keyless_task_and_keeps_a_keyed_one_as_done(admin: Admin) -> None:
    plain = await enqueue(admin, run_at=datetime.now(UTC) + timedelta(hours=1))
    keyed = await enqueue(admin, key="invoice:7")

    response = await admin.client.post(f"/tasks/{plain}/complete", headers=OPERATOR)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "action": "complete",
        "taskId": str(plain),
        "previousState": "scheduled",
        "state": "done",
        "task": None,
    }
    assert await admin.queue.get_task(plain) is None

    body = (await admin.client.post(f"/tasks/{keyed}/complete", headers=OPERATOR)).json()
    assert (body["state"], body["task"]["state"], body["task"]["key"]) == (
        "done",
        "done",
        "invoice:7",
    )
    assert [(s, t, a) for s, t, a, _ in await audited(admin, "task.complete")] == [
        ("ok", str(plain), "olga"),
        ("ok", str(keyed), "olga"),
    ]


async def test_fail_dead_letters_the_task_with_the_reason(admin: Admin) -> None:
    task_id = await enqueue(admin, queue="mail")
    response = await admin.client.post(
        f"/tasks/{task_id}/fail", json={"reason": "address bounced"}, headers=OPERATOR
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["previousState"], body["state"]) == ("ready", "dead")
    assert body["task"]["lastError"] == "address bounced"
    entry = (await admin.client.get(f"/dlq/{task_id}", headers=VIEWER)).json()["entry"]
    assert entry["lastError"] == "address bounced"

    # Failing it again: it is already dead.
    response = await admin.client.post(
        f"/tasks/{task_id}/fail", json={"reason": "again"}, headers=OPERATOR
    )
    assert "already in the dead-letter queue" in assert_envelope(response, 409, "conflict")
    assert [s for s, *_ in await audited(admin, "task.fail")] == ["ok", "error"]


async def test_a_fail_without_a_usable_reason_is_400_naming_reason(admin: Admin) -> None:
    task_id = await enqueue(admin)
    for body in (
        None,
        {},
        {"reason": ""},
        {"reason": "   "},
        {"reason": 5},
        {"reason": "x" * 5000},
    ):
        response = await admin.client.post(f"/tasks/{task_id}/fail", json=body, headers=OPERATOR)
        message = assert_envelope(response, 400, "invalid_request")
        assert "reason" in message or "body" in message, message
    assert (await admin.queue.get_task(task_id)).state is TaskState.READY
    statuses = [s for s, *_ in await audited(admin, "task.fail")]
    assert statuses == ["error"] * 6


async def test_run_now_makes_a_scheduled_task_ready(admin: Admin) -> None:
    task_id = await enqueue(admin, run_at=datetime.now(UTC) + timedelta(days=2))
    body = (await admin.client.post(f"/tasks/{task_id}/run-now", headers=OPERATOR)).json()
    assert (body["previousState"], body["state"], body["task"]["state"]) == (
        "scheduled",
        "ready",
        "ready",
    )
    claimed = await admin.queue.claim("w1", 5, lease=timedelta(seconds=30))
    assert [t.id for t in claimed] == [task_id]


async def test_reschedule_changes_the_given_fields(admin: Admin) -> None:
    task_id = await enqueue(admin, priority=4)
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    response = await admin.client.post(
        f"/tasks/{task_id}/reschedule",
        json={"runAt": later.isoformat(), "attempts": 1, "maxAttempts": 9},
        headers=OPERATOR,
    )
    assert response.status_code == 200, response.text
    task = response.json()["task"]
    assert (task["state"], task["priority"], task["attempts"], task["maxAttempts"]) == (
        "scheduled",
        4,
        1,
        9,
    )
    assert task["runAtMs"] == int(later.timestamp() * 1000)
    stored = await admin.queue.get_task(task_id)
    assert stored.retry.max_attempts == 9


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "runAt"),
        ({"priority": 1001}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"attempts": -1}, "attempts"),
        ({"maxAttempts": 0}, "maxAttempts"),
        ({"runAt": "tomorrow"}, "runAt"),
        ({"runAt": "2030-01-01T00:00:00"}, "runAt"),
        ({"runAt": "0001-01-01T00:00:00+14:00"}, "runAt"),
        ({"runAt": "9999-12-31T23:00:00-10:00"}, "runAt"),
        ({"attempts": 3, "maxAttempts": 3}, "attempts"),
        ({"maxAttempts": 2, "attempts": 2}, "attempts"),
        ({"priority": 1, "colour": "red"}, "colour"),
    ],
)
async def test_a_bad_reschedule_is_400_naming_the_field_and_changes_nothing(
    admin: Admin, body: dict[str, Any], field: str
) -> None:
    task_id = await enqueue(admin, priority=2)
    response = await admin.client.post(f"/tasks/{task_id}/reschedule", json=body, headers=OPERATOR)
    assert field in assert_envelope(response, 400, "invalid_request")
    task = await admin.queue.get_task(task_id)
    assert (task.priority, task.attempts, task.max_attempts) == (2, 0, 5)
    assert [s for s, *_ in await audited(admin, "task.reschedule")] == ["error"]


async def test_a_running_task_is_409_for_every_action_and_keeps_its_lease(admin: Admin) -> None:
    task_id = await enqueue(admin, key="busy-key")
    [claimed] = await admin.queue.claim("worker-7", 1, lease=timedelta(seconds=60))
    assert claimed.id == task_id
    calls = [
        (f"/tasks/{task_id}/complete", None, OPERATOR),
        (f"/tasks/{task_id}/fail", {"reason": "stop"}, OPERATOR),
        (f"/tasks/{task_id}/run-now", None, OPERATOR),
        (f"/tasks/{task_id}/reschedule", {"priority": 1}, OPERATOR),
        ("/tasks/remove", {"key": "busy-key"}, ADMIN),
    ]
    for path, body, who in calls:
        response = await admin.client.post(path, json=body, headers=who)
        message = assert_envelope(response, 409, "conflict")
        assert "worker-7" in message, message
        assert "lease" in message, message
    task = await admin.queue.get_task(task_id)
    assert (task.state, task.lease_owner) == (TaskState.RUNNING, "worker-7")
    assert await admin.queue.complete("worker-7", [task_id]) == 1
    for action in ("task.complete", "task.fail", "task.run_now", "task.reschedule", "task.remove"):
        [(status, _target, _actor, detail)] = await audited(admin, action)
        assert status == "error", (action, detail)
        assert detail.startswith("409"), (action, detail)


async def test_unknown_or_malformed_task_ids_are_404_or_400(admin: Admin) -> None:
    for action in ("complete", "run-now"):
        response = await admin.client.post(f"/tasks/424242/{action}", headers=OPERATOR)
        assert "424242" in assert_envelope(response, 404, "not_found")
    response = await admin.client.post("/tasks/0/complete", headers=OPERATOR)
    assert_envelope(response, 400, "invalid_request")
    response = await admin.client.post("/tasks/abc/run-now", headers=OPERATOR)
    assert_envelope(response, 400, "invalid_request")
    response = await admin.client.post("/tasks/99999999999999999999/complete", headers=OPERATOR)
    assert_envelope(response, 400, "invalid_request")


async def test_remove_by_key_deletes_the_task_and_frees_the_key(admin: Admin) -> None:
    task_id = await enqueue(admin, key="report:2026-12", queue="reports")
    response = await admin.client.post(
        "/tasks/remove", json={"key": "report:2026-12", "queue": "other"}, headers=ADMIN
    )
    assert "other" in assert_envelope(response, 404, "not_found")
    response = await admin.client.post(
        "/tasks/remove", json={"key": "report:2026-12", "queue": "reports"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["taskId"], body["previousState"], body["state"], body["task"]) == (
        str(task_id),
        "ready",
        "removed",
        None,
    )
    assert await admin.queue.get_task(task_id) is None
    response = await admin.client.post("/tasks/remove", json={"key": ""}, headers=ADMIN)
    assert "key" in assert_envelope(response, 400, "invalid_request")
    response = await admin.client.post(
        "/tasks/remove", json={"key": "k", "queue": "bad queue!"}, headers=ADMIN
    )
    assert "queue" in assert_envelope(response, 400, "invalid_request")
    # An operator may not remove: it deletes a task for good.
    response = await admin.client.post("/tasks/remove", json={"key": "k"}, headers=OPERATOR)
    assert_envelope(response, 403, "forbidden")
    entries = await audited(admin, "task.remove")
    assert [(s, t) for s, t, *_ in entries] == [
        ("error", "report:2026-12"),
        ("ok", "report:2026-12"),
        ("error", ""),
        ("error", "k"),
        ("error", "k"),
    ]


async def test_a_viewer_may_not_act_on_tasks_and_is_audited(admin: Admin) -> None:
    task_id = await enqueue(admin)
    for action in ("complete", "run-now"):
        response = await admin.client.post(f"/tasks/{task_id}/{action}", headers=VIEWER)
        assert_envelope(response, 403, "forbidden")
    assert (await admin.queue.get_task(task_id)).state is TaskState.READY
    assert [(s, a) for s, _, a, _ in await audited(admin, "task.complete")] == [("error", "vic")]


# --- maintenance ------------------------------------------------------------------------------


async def test_force_unlock_releases_the_named_workers_tasks(admin: Admin) -> None:
    first = await enqueue(admin)
    second = await enqueue(admin)
    await admin.queue.claim("w-gone", 1, lease=timedelta(minutes=5))
    await admin.queue.claim("w-alive", 1, lease=timedelta(minutes=5))
    response = await admin.client.post(
        "/maintenance/force-unlock", json={"workerIds": ["w-gone", "w-unknown"]}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"released": 1, "byWorker": {"w-gone": [str(first)]}}
    assert (await admin.queue.get_task(first)).state is TaskState.READY
    assert (await admin.queue.get_task(second)).state is TaskState.RUNNING
    for body in ({"workerIds": []}, {}, {"workerIds": [""]}, {"workerIds": "w-gone"}):
        response = await admin.client.post("/maintenance/force-unlock", json=body, headers=ADMIN)
        assert "workerIds" in assert_envelope(response, 400, "invalid_request")
    response = await admin.client.post(
        "/maintenance/force-unlock", json={"workerIds": ["w-alive"]}, headers=OPERATOR
    )
    assert_envelope(response, 403, "forbidden")
    statuses = [(s, d) for s, _, _, d in await audited(admin, "maintenance.force_unlock")]
    assert statuses[0] == ("ok", "workers=2 released=1")
    assert [s for s, _ in statuses[1:]] == ["error"] * 5


async def test_sweep_stale_workers_dry_run_changes_nothing_then_sweeps(admin: Admin) -> None:
    task_id = await enqueue(admin)
    await admin.queue.register_worker(
        WorkerInfo(worker_id="w-stale", hostname="h", pid=1, concurrency=1)
    )
    await admin.queue.claim("w-stale", 1, lease=timedelta(minutes=5))
    await admin.queue.register_worker(
        WorkerInfo(worker_id="w-fresh", hostname="h", pid=2, concurrency=1)
    )
    # Nothing is a day old: nothing to sweep.
    response = await admin.client.post(
        "/maintenance/sweep-stale-workers",
        json={"dryRun": True, "olderThanSeconds": 86400},
        headers=OPERATOR,
    )
    assert response.json()["workers"] == []
    await _age_heartbeat(admin, "w-stale")
    response = await admin.client.post(
        "/maintenance/sweep-stale-workers",
        json={"dryRun": True, "olderThanSeconds": 60},
        headers=OPERATOR,
    )
    body = response.json()
    assert (body["dryRun"], body["olderThanSeconds"], body["tasks"]) == (True, 60, 1)
    assert [w["workerId"] for w in body["workers"]] == ["w-stale"]
    assert {r.info.worker_id for r in await admin.queue.list_workers()} == {"w-stale", "w-fresh"}
    assert (await admin.queue.get_task(task_id)).state is TaskState.RUNNING

    body = (
        await admin.client.post(
            "/maintenance/sweep-stale-workers", json={"olderThanSeconds": 60}, headers=OPERATOR
        )
    ).json()
    assert (body["dryRun"], [w["workerId"] for w in body["workers"]]) == (False, ["w-stale"])
    assert {r.info.worker_id for r in await admin.queue.list_workers()} == {"w-fresh"}
    assert (await admin.queue.get_task(task_id)).state is TaskState.READY
    response = await admin.client.post(
        "/maintenance/sweep-stale-workers", json={"dryRun": "yes"}, headers=OPERATOR
    )
    assert "dryRun" in assert_envelope(response, 400, "invalid_request")
    details = [(s, d) for s, _, _, d in await audited(admin, "maintenance.sweep_stale_workers")]
    assert details[:3] == [
        ("ok", "dryRun=true workers=0 tasks=0"),
        ("ok", "dryRun=true workers=1 tasks=1"),
        ("ok", "dryRun=false workers=1 tasks=1"),
    ]
    assert details[3][0] == "error"


async def _age_heartbeat(admin: Admin, worker_id: str) -> None:
    """Make a worker's last heartbeat an hour old, as a worker that died would leave it."""
    queue = admin.queue
    if hasattr(queue, "_db") and type(queue).__name__.startswith("Sqlite"):
        old = int((datetime.now(UTC) - timedelta(hours=1)).timestamp() * 1_000_000)
        await queue._db.write(
            lambda conn: conn.execute(
                "UPDATE workers SET heartbeat_at = ? WHERE worker_id = ?", (old, worker_id)
            )
        )
    else:
        await queue._db.execute(
            "UPDATE workers SET heartbeat_at = now() - interval '1 hour' WHERE worker_id = $1",
            worker_id,
        )


async def test_cleanup_purges_nothing_retained_and_forgets_empty_queues(admin: Admin) -> None:
    kept = await enqueue(admin, queue="busy")
    gone = await enqueue(admin, queue="typo-queue")
    await admin.queue.cancel(gone)
    response = await admin.client.post("/maintenance/cleanup", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "tasks": ["expired-keys", "empty-queues"],
        "expiredKeysDeleted": 0,
        "queuesRemoved": ["typo-queue"],
    }
    names = [
        q["name"] for q in (await admin.client.get("/queues", headers=VIEWER)).json()["queues"]
    ]
    assert "typo-queue" not in names
    assert "busy" in names
    assert (await admin.queue.get_task(kept)).state is TaskState.READY
    body = (
        await admin.client.post(
            "/maintenance/cleanup", json={"tasks": ["expired-keys"]}, headers=ADMIN
        )
    ).json()
    assert body["tasks"] == ["expired-keys"]
    assert body["queuesRemoved"] == []
    response = await admin.client.post(
        "/maintenance/cleanup", json={"tasks": ["delete-everything"]}, headers=ADMIN
    )
    assert "tasks" in assert_envelope(response, 400, "invalid_request")
    response = await admin.client.post("/maintenance/cleanup", headers=OPERATOR)
    assert_envelope(response, 403, "forbidden")
    assert [s for s, *_ in await audited(admin, "maintenance.cleanup")] == [
        "ok",
        "ok",
        "error",
        "error",
    ]


# --- dead-letter impact preview -----------------------------------------------------------------


async def test_replay_and_purge_previews_count_by_queue_and_change_nothing(admin: Admin) -> None:
    x = await admin.dead_tasks(3, queue="queue-x")
    await admin.dead_tasks(1, queue="queue-y")

    response = await admin.client.post("/dlq/replay", json={"dryRun": True}, headers=OPERATOR)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "dryRun": True,
        "action": "replay",
        "total": 4,
        "byQueue": {"queue-x": 3, "queue-y": 1},
    }
    body = (
        await admin.client.post(
            "/dlq/replay", json={"dryRun": True, "queue": "queue-x", "limit": 2}, headers=OPERATOR
        )
    ).json()
    assert (body["total"], body["byQueue"]) == (2, {"queue-x": 2})
    body = (
        await admin.client.post(
            "/dlq/replay/ids", json={"dryRun": True, "ids": [str(x[0]), "999999"]}, headers=OPERATOR
        )
    ).json()
    assert (body["total"], body["byQueue"]) == (1, {"queue-x": 1})
    body = (await admin.client.post("/dlq/purge", json={"dryRun": True}, headers=ADMIN)).json()
    assert (body["action"], body["total"], body["byQueue"]) == (
        "purge",
        4,
        {"queue-x": 3, "queue-y": 1},
    )
    body = (
        await admin.client.post(
            "/dlq/purge", json={"dryRun": True, "olderThanSeconds": 3600}, headers=ADMIN
        )
    ).json()
    assert body["total"] == 0
    assert (await admin.client.get("/dlq/stats", headers=VIEWER)).json()["stats"]["total"] == 4
    # The caps still apply to a preview, and a preview needs the real call's role.
    response = await admin.client.post(
        "/dlq/replay", json={"dryRun": True, "limit": 6}, headers=OPERATOR
    )
    assert_envelope(response, 429, "replay_limit_exceeded")
    response = await admin.client.post("/dlq/purge", json={"dryRun": True}, headers=OPERATOR)
    assert_envelope(response, 403, "forbidden")
    response = await admin.client.post("/dlq/purge", json={"dryRun": 1}, headers=ADMIN)
    assert "dryRun" in assert_envelope(response, 400, "invalid_request")
    # Without dryRun the answers keep their shape.
    assert (await admin.client.post("/dlq/purge", headers=ADMIN)).json() == {"purged": 4}
    details = [d for s, _, _, d in await audited(admin, "dlq.replay") if s == "ok"]
    assert details == ["dryRun=true wouldReplay=4", "dryRun=true wouldReplay=2"]


# --- schedule preview -----------------------------------------------------------------------------


async def test_the_schedule_preview_lists_fire_times_in_the_zone_and_utc(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as full:
        client = full.client
        response = await client.post(
            "/schedules/preview",
            json={
                "spec": "30 9 * * 1-5",
                "timezone": "Europe/Berlin",
                "count": 3,
                "after": "2026-03-27T12:00:00Z",
            },
            headers=VIEWER,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["spec"], body["timezone"]) == ("30 9 * * 1-5", "Europe/Berlin")
        # Friday 27 March (CET), then Monday 30 and Tuesday 31 March (CEST).
        assert [t["at"] for t in body["fireTimes"]] == [
            "2026-03-30T09:30:00+02:00",
            "2026-03-31T09:30:00+02:00",
            "2026-04-01T09:30:00+02:00",
        ]
        assert body["fireTimes"][0]["atUtc"] == "2026-03-30T07:30:00Z"
        default = (
            await client.post("/schedules/preview", json={"spec": "@hourly"}, headers=VIEWER)
        ).json()
        assert len(default["fireTimes"]) == 5
        assert default["timezone"] == "UTC"
        for bad, field in (
            ({"spec": "61 * * * *"}, "spec"),
            ({"spec": "@daily", "timezone": "Mars/Olympus"}, "timezone"),
            ({"spec": "@daily", "count": 51}, "count"),
            ({"spec": "@daily", "count": 0}, "count"),
            ({"spec": ""}, "spec"),
            ({"spec": "@daily", "after": "0001-01-01T00:00:00+14:00"}, "after"),
            ({}, "spec"),
        ):
            response = await client.post("/schedules/preview", json=bad, headers=VIEWER)
            assert field in assert_envelope(response, 400, "invalid_request"), bad
        # Not a mutation: nothing is audited.
        assert await full.audit_entries() == []


# --- job runs ---------------------------------------------------------------------------


async def test_completing_or_failing_a_job_run_task_ends_its_queued_run(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    from store.jobs.models import RunStatus

    async with full_admin(backend, queue_location, tmp_path, settings=GIT_SETTINGS) as full:
        client = full.client
        assert (await client.post("/jobs", json=NIGHTLY, headers=ADMIN)).status_code == 201
        runs = full.runtime.stores.runs
        outcomes = []
        for action, body in (("complete", None), ("fail", {"reason": "not tonight"})):
            started = (await client.post("/jobs/nightly/run", headers=OPERATOR)).json()
            response = await client.post(
                f"/tasks/{started['taskId']}/{action}", json=body, headers=OPERATOR
            )
            assert response.status_code == 200, response.text
            run = await runs.get(started["runId"])
            outcomes.append((run.status, run.error))
        assert outcomes == [
            (RunStatus.CANCELLED, "completed by olga without running"),
            (RunStatus.FAILED, "failed by olga: not tonight"),
        ]
        [entry, _] = await full.audit_entries(action="task.fail") + await full.audit_entries(
            action="task.complete"
        )
        assert entry.detail.endswith("runsEnded=1")


async def test_a_job_run_tasks_last_error_is_shown_without_host_paths_or_addresses(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    reason = "open /srv/longshore-data/work/run-42/Dockerfile; lookup on 10.0.0.2:53 failed"
    async with full_admin(backend, queue_location, tmp_path, settings=GIT_SETTINGS) as full:
        client = full.client
        assert (await client.post("/jobs", json=NIGHTLY, headers=ADMIN)).status_code == 201
        started = (await client.post("/jobs/nightly/run", headers=OPERATOR)).json()
        task_id = started["taskId"]
        failed = await client.post(
            f"/tasks/{task_id}/fail", json={"reason": reason}, headers=OPERATOR
        )
        assert failed.status_code == 200, failed.text
        mail = await full.runtime.stores.queue.enqueue(NewTask(handler="send_email"))
        await full.runtime.stores.queue.fail_task(mail.task.id, reason)
        shown = [
            failed.json()["task"]["lastError"],
            (await client.get(f"/tasks/{task_id}", headers=VIEWER)).json()["task"]["lastError"],
            (await client.get(f"/dlq/{task_id}", headers=VIEWER)).json()["entry"]["lastError"],
        ]
        listed = (await client.get("/dlq", headers=VIEWER)).json()["entries"]
        by_id = {entry["id"]: entry["lastError"] for entry in listed}
        shown.append(by_id[str(task_id)])
        for text in shown:
            assert text == "open …/Dockerfile; lookup on <address> failed"
        # Another handler's error is its own: shown as it was recorded.
        assert by_id[str(mail.task.id)] == reason


async def test_the_openapi_document_lists_the_new_routes(admin: Admin) -> None:
    doc = (await admin.client.get("/openapi.json", headers=VIEWER)).json()
    for path in (
        "/admin/v1/tasks/{task_id}/complete",
        "/admin/v1/tasks/{task_id}/fail",
        "/admin/v1/tasks/{task_id}/run-now",
        "/admin/v1/tasks/{task_id}/reschedule",
        "/admin/v1/tasks/remove",
        "/admin/v1/maintenance/cleanup",
        "/admin/v1/maintenance/force-unlock",
        "/admin/v1/maintenance/sweep-stale-workers",
        "/admin/v1/schedules/preview",
    ):
        assert path in doc["paths"], path

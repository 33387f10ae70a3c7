"""The ``/schedules`` routes of the admin API over a whole runtime (SQLite and PostgreSQL):
seed 003 shapes, create/update/delete, pause/resume (one and all), run now and its cap,
factories, events, roles, approval and audit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from scheduler.service import SchedulerService
from store.events import AuditEntry
from store.queue.models import TaskFilter
from tests.integration.admin_harness import (
    ADMIN,
    APPROVAL,
    OPERATOR,
    VIEWER,
    FullAdmin,
    full_admin,
)

HANDLERS = ("builtin.noop", "reports.daily")
"""Queue handlers registered as factories (``WORKER_DURABLE_CRON_HANDLERS``)."""


@asynccontextmanager
async def schedules_admin(
    backend: str, queue_location: Any, tmp_path: Path, **config: Any
) -> AsyncIterator[FullAdmin]:
    async with full_admin(
        backend,
        queue_location,
        tmp_path,
        settings={"durable_cron_handlers": HANDLERS},
        **config,
    ) as admin:
        yield admin


def assert_envelope(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"requestId", "error"}
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    assert message
    return message


def moment(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo is not None
    assert text.endswith("Z")
    return parsed


def statuses(entries: list[AuditEntry]) -> list[str]:
    """Audit statuses oldest first (the log answers newest first)."""
    return [entry.status.value for entry in reversed(entries)]


FULL_BODY: dict[str, Any] = {
    "name": "hourly-report",
    "spec": "0 * * * *",
    "timezone": "Europe/Berlin",
    "factory": "builtin.noop",
    "payload": {"report": "sales", "n": 1},
    "paused": False,
    "durable": True,
    "overlapPolicy": "forbid",
    "misfireGraceSeconds": 30,
    "catchUp": "latest",
}


async def create(admin: FullAdmin, body: dict[str, Any]) -> dict[str, Any]:
    response = await admin.client.post("/schedules", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    schedule: dict[str, Any] = response.json()["schedule"]
    return schedule


# --- create, list, get ------------------------------------------------------------------


async def test_the_seed_body_creates_a_schedule_listed_in_the_seed_shape(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(backend, queue_location, tmp_path) as admin:
        body = {"name": "reports.daily", "spec": "*/5 * * * *", "durable": False}
        created = await create(admin, body)
        assert created["name"] == "reports.daily"

        response = await admin.client.get("/schedules", headers=VIEWER)
        assert response.status_code == 200, response.text
        page = response.json()
        assert (page["total"], page["limit"], page["offset"]) == (1, 100, 0)
        [item] = page["schedules"]
        assert item == created
        assert item["schedule"] == item["spec"] == "*/5 * * * *"
        assert item["timezone"] == "UTC"
        assert item["factory"] == "reports.daily"
        assert item["payload"] == {}
        assert item["paused"] is False
        assert item["durable"] is True  # every schedule is persisted, whatever was sent
        assert item["overlapPolicy"] == "allow"
        assert item["misfireGraceSeconds"] == 5
        assert item["catchUp"] == "none"
        assert item["status"] == "healthy"
        assert item["revision"] == 1
        next_run = moment(item["nextRun"])
        assert item["nextRunMs"] == int(next_run.timestamp() * 1000)
        assert next_run.minute % 5 == 0
        assert next_run.second == 0
        # It never fired: no last run, though the spec had ticks before it existed.
        assert (item["lastRun"], item["lastRunMs"]) == ("", 0)
        previous_tick = moment(item["previousTick"])
        assert item["previousTickMs"] == int(previous_tick.timestamp() * 1000)
        assert previous_tick < next_run
        assert item["lastTaskId"] is None

        response = await admin.client.get("/schedules/reports.daily", headers=VIEWER)
        assert response.status_code == 200
        assert response.json() == {"schedule": item}

        [entry] = await admin.audit_entries(action="schedule.create")
        assert (entry.actor, entry.target, entry.status.value) == ("alice", "reports.daily", "ok")
        assert "created" in entry.detail


async def test_a_full_body_is_kept_and_an_update_keeps_what_it_leaves_out(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(backend, queue_location, tmp_path) as admin:
        created = await create(admin, FULL_BODY)
        for field, value in FULL_BODY.items():
            assert created[field] == value, field
        assert created["schedule"] == "0 * * * *"

        response = await admin.client.post(
            "/schedules", json={"name": "hourly-report", "spec": "30 * * * *"}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        updated = response.json()["schedule"]
        assert updated["schedule"] == updated["spec"] == "30 * * * *"
        assert updated["revision"] == 2
        for field in ("timezone", "factory", "payload", "durable", "overlapPolicy"):
            assert updated[field] == FULL_BODY[field], field
        assert updated["misfireGraceSeconds"] == 30
        assert updated["catchUp"] == "latest"
        assert moment(updated["nextRun"]).minute == 30

        response = await admin.client.post(
            "/schedules",
            json={"name": "hourly-report", "spec": "30 * * * *", "payload": {}, "paused": True},
            headers=ADMIN,
        )
        assert response.status_code == 200
        again = response.json()["schedule"]
        assert (again["payload"], again["paused"], again["status"]) == ({}, True, "paused")
        assert (again["nextRun"], again["nextRunMs"]) == ("", 0)  # never null

        entries = await admin.audit_entries(action="schedule.create", target="hourly-report")
        assert statuses(entries) == ["ok", "ok", "ok"]
        assert [e.detail for e in reversed(entries)][1:] == [
            "updated revision=2",
            "updated revision=3",
        ]


async def test_bad_input_is_a_400_naming_the_field_and_nothing_is_saved(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(backend, queue_location, tmp_path) as admin:
        post = admin.client.post
        base = {"name": "builtin.noop", "spec": "* * * * *"}
        message = assert_envelope(
            await post("/schedules", json={**base, "spec": "61 * * * *"}, headers=ADMIN),
            400,
            "invalid_request",
        )
        assert message.startswith("spec:")
        assert "61 * * * *" in message
        assert "minute" in message

        message = assert_envelope(
            await post("/schedules", json={**base, "timezone": "Mars/Base"}, headers=ADMIN),
            400,
            "invalid_request",
        )
        assert message.startswith("timezone:")
        assert "Mars/Base" in message

        for body, field in (
            ({**base, "spec": "@every soon"}, "spec"),
            ({**base, "spec": "not cron"}, "spec"),
            ({**base, "overlapPolicy": "sometimes"}, "overlapPolicy"),
            ({**base, "catchUp": "all"}, "catchUp"),
            ({**base, "misfireGraceSeconds": -1}, "misfireGraceSeconds"),
            ({**base, "paused": "yes"}, "paused"),
            ({**base, "payload": [1]}, "payload"),
            ({**base, "name": "bad name"}, "name"),
            ({**base, "name": "a:b"}, "name"),
            ({"name": "builtin.noop"}, "spec"),
            ({**base, "spec": ""}, "spec"),
            ({**base, "colour": "red"}, "colour"),
        ):
            message = assert_envelope(
                await post("/schedules", json=body, headers=ADMIN), 400, "invalid_request"
            )
            assert field in message, (body, message)

        response = await post(
            "/schedules", content=b"{", headers={**ADMIN, "Content-Type": "application/json"}
        )
        assert_envelope(response, 400, "invalid_request")

        listed = (await admin.client.get("/schedules", headers=VIEWER)).json()
        assert listed["total"] == 0
        assert listed["schedules"] == []
        entries = await admin.audit_entries(action="schedule.create")
        assert len(entries) == 15
        assert {e.status.value for e in entries} == {"error"}
        assert entries[-1].target == "builtin.noop"
        assert "400" in entries[-1].detail


async def test_an_unknown_factory_is_412(backend: str, queue_location: Any, tmp_path: Path) -> None:
    async with schedules_admin(backend, queue_location, tmp_path) as admin:
        for body in (
            {"name": "nobody-knows", "spec": "* * * * *"},
            {"name": "known-name", "spec": "* * * * *", "factory": "ghost"},
        ):
            response = await admin.client.post("/schedules", json=body, headers=ADMIN)
            message = assert_envelope(response, 412, "precondition_failed")
            assert message.startswith("factory:")
            assert repr(body.get("factory", body["name"])) in message
        assert (await admin.client.get("/schedules", headers=VIEWER)).json()["total"] == 0
        entries = await admin.audit_entries(action="schedule.create")
        assert [(e.target, e.status.value) for e in reversed(entries)] == [
            ("nobody-knows", "error"),
            ("known-name", "error"),
        ]


async def test_get_and_delete_answer_404_for_a_missing_schedule(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(backend, queue_location, tmp_path) as admin:
        await create(admin, {"name": "builtin.noop", "spec": "@hourly"})
        assert_envelope(
            await admin.client.get("/schedules/missing", headers=VIEWER), 404, "not_found"
        )
        assert_envelope(
            await admin.client.get("/schedules/bad%00name", headers=VIEWER), 404, "not_found"
        )

        response = await admin.client.delete("/schedules/builtin.noop", headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json() == {"name": "builtin.noop", "deleted": True}
        assert_envelope(
            await admin.client.get("/schedules/builtin.noop", headers=VIEWER), 404, "not_found"
        )
        assert_envelope(
            await admin.client.delete("/schedules/builtin.noop", headers=ADMIN), 404, "not_found"
        )
        entries = await admin.audit_entries(action="schedule.delete", target="builtin.noop")
        assert statuses(entries) == ["ok", "error"]


# --- pause and resume -------------------------------------------------------------------


async def test_one_schedule_is_paused_by_an_empty_body_and_resumed_by_false(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(backend, queue_location, tmp_path) as admin:
        await create(admin, {"name": "builtin.noop", "spec": "* * * * *"})
        await create(admin, {"name": "reports.daily", "spec": "* * * * *"})

        response = await admin.client.post("/schedules/builtin.noop/pause", headers=OPERATOR)
        assert response.status_code == 200, response.text
        paused = response.json()["schedule"]
        assert (paused["paused"], paused["status"]) == (True, "paused")
        assert (paused["nextRun"], paused["nextRunMs"]) == ("", 0)  # never null
        assert paused["previousTick"] != ""
        other = (await admin.client.get("/schedules/reports.daily", headers=VIEWER)).json()
        assert other["schedule"]["status"] == "healthy"

        response = await admin.client.post(
            "/schedules/builtin.noop/pause", json={"paused": True}, headers=OPERATOR
        )
        assert response.json()["schedule"]["status"] == "paused"

        response = await admin.client.post(
            "/schedules/builtin.noop/pause", json={"paused": False}, headers=OPERATOR
        )
        assert response.status_code == 200
        resumed = response.json()["schedule"]
        assert (resumed["paused"], resumed["status"]) == (False, "healthy")
        assert resumed["nextRunMs"] == int(moment(resumed["nextRun"]).timestamp() * 1000)

        assert_envelope(
            await admin.client.post("/schedules/missing/pause", headers=OPERATOR),
            404,
            "not_found",
        )
        message = assert_envelope(
            await admin.client.post(
                "/schedules/builtin.noop/pause", json={"paused": "no"}, headers=OPERATOR
            ),
            400,
            "invalid_request",
        )
        assert "paused" in message
        entries = await admin.audit_entries(action="schedule.pause", target="builtin.noop")
        assert statuses(entries) == ["ok", "ok", "ok", "error"]
        assert [e.detail for e in reversed(entries)][:3] == [
            "paused=true",
            "paused=true",
            "paused=false",
        ]


async def test_pause_all_and_resume_all_leave_each_schedule_as_listed(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(backend, queue_location, tmp_path) as admin:
        await create(admin, {"name": "builtin.noop", "spec": "* * * * *"})
        await create(admin, {"name": "reports.daily", "spec": "0 9 * * 1-5"})

        response = await admin.client.post(
            "/schedules/pause", json={"paused": True}, headers=OPERATOR
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"paused": True, "updated": 2}
        listed = (await admin.client.get("/schedules", headers=VIEWER)).json()["schedules"]
        assert [(s["status"], s["paused"], s["nextRun"]) for s in listed] == [
            ("paused", True, ""),
            ("paused", True, ""),
        ]

        # Already paused: nothing changes.
        response = await admin.client.post("/schedules/pause", headers=OPERATOR)
        assert response.json() == {"paused": True, "updated": 0}

        # One schedule resumed on its own after pause-all runs again; the other stays.
        response = await admin.client.post(
            "/schedules/builtin.noop/pause", json={"paused": False}, headers=OPERATOR
        )
        resumed = response.json()["schedule"]
        assert (resumed["paused"], resumed["status"]) == (False, "healthy")
        assert resumed["nextRun"] != ""
        other = (await admin.client.get("/schedules/reports.daily", headers=VIEWER)).json()
        assert (other["schedule"]["paused"], other["schedule"]["status"]) == (True, "paused")

        response = await admin.client.post(
            "/schedules/pause", json={"paused": False}, headers=OPERATOR
        )
        assert response.json() == {"paused": False, "updated": 1}
        listed = (await admin.client.get("/schedules", headers=VIEWER)).json()["schedules"]
        assert [(s["status"], s["paused"]) for s in listed] == [
            ("healthy", False),
            ("healthy", False),
        ]
        assert all(s["nextRun"] != "" for s in listed)

        entries = await admin.audit_entries(action="schedule.pause_all")
        assert statuses(entries) == ["ok", "ok", "ok"]
        assert {e.target for e in entries} == {"*"}
        assert [e.detail for e in reversed(entries)] == [
            "paused=true updated=2",
            "paused=true updated=0",
            "paused=false updated=1",
        ]


async def test_the_pause_all_switch_of_an_earlier_version_gives_way_to_each_schedules_flag(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(backend, queue_location, tmp_path) as admin:
        await create(admin, {"name": "builtin.noop", "spec": "* * * * *"})
        await create(admin, {"name": "reports.daily", "spec": "0 9 * * 1-5"})
        await admin.runtime.stores.schedules.set_all_paused(True)
        listed = (await admin.client.get("/schedules", headers=VIEWER)).json()["schedules"]
        assert [(s["status"], s["paused"]) for s in listed] == [("paused", True)] * 2

        response = await admin.client.post(
            "/schedules/builtin.noop/pause", json={"paused": False}, headers=OPERATOR
        )
        assert response.json()["schedule"]["status"] == "healthy"
        listed = (await admin.client.get("/schedules", headers=VIEWER)).json()["schedules"]
        assert [(s["status"], s["paused"]) for s in listed] == [
            ("healthy", False),
            ("paused", True),
        ]
        assert not (await admin.runtime.stores.schedules.state()).all_paused


# --- run now ----------------------------------------------------------------------------


async def test_run_now_enqueues_while_paused_and_is_a_schedule_event(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(backend, queue_location, tmp_path) as admin:
        await create(admin, {**FULL_BODY, "overlapPolicy": "allow", "spec": "0 0 1 1 *"})
        name = FULL_BODY["name"]
        await admin.client.post(f"/schedules/{name}/pause", headers=OPERATOR)

        response = await admin.client.post(f"/schedules/{name}/run", headers=OPERATOR)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["schedule"] == name
        assert (result["status"], result["enqueued"], result["reason"]) == ("enqueued", True, None)
        assert result["key"].startswith(f"schedule:{name}:manual:")
        task = await admin.runtime.stores.queue.get_task(int(result["taskId"]))
        assert task is not None
        assert task.key == result["key"]
        assert task.handler == "builtin.noop"
        assert task.payload == FULL_BODY["payload"]
        assert task.state.value == "ready"

        shown = (await admin.client.get(f"/schedules/{name}", headers=VIEWER)).json()["schedule"]
        assert shown["status"] == "paused"
        assert shown["lastTaskId"] == result["taskId"]
        # A manual run is a firing: the last run is now, though no tick of the spec fired.
        assert shown["lastRunMs"] >= task.created_at.timestamp() * 1000 - 1000
        assert shown["lastRunMs"] == int(moment(shown["lastRun"]).timestamp() * 1000)

        response = await admin.client.get(
            "/schedules/events", params={"name": name, "limit": 25}, headers=VIEWER
        )
        assert response.status_code == 200, response.text
        events = response.json()["events"]
        # Firings only: creating and pausing are in the audit log, not here.
        [fired] = events
        assert fired["type"] == "ScheduleFired"
        assert fired["name"] == fired["schedule"] == name
        assert (fired["spec"], fired["durable"], fired["queue"]) == ("0 0 1 1 *", True, "default")
        assert fired["taskId"] == result["taskId"]
        assert fired["key"] == result["key"]
        assert fired["trigger"] == "manual"
        assert (fired["status"], fired["reason"], fired["error"]) == ("queued", "", "")
        assert fired["metadata"]["task.state"] == "ready"
        assert fired["scheduledAtMs"] == int(moment(fired["scheduledAt"]).timestamp() * 1000)
        assert fired["startedAtMs"] == int(moment(fired["startedAt"]).timestamp() * 1000)
        assert fired["atMs"] == int(moment(fired["at"]).timestamp() * 1000)
        assert "finishedAtMs" not in fired
        assert fired["durationMs"] == -1

        await admin.client.post(f"/schedules/{name}/run", headers=OPERATOR)
        limited = await admin.client.get(
            "/schedules/events", params={"name": name, "limit": 1}, headers=VIEWER
        )
        [newest] = limited.json()["events"]
        assert newest["id"] > fired["id"]
        none = await admin.client.get("/schedules/events", params={"name": "other"}, headers=VIEWER)
        assert none.json() == {"events": []}
        # Without a name: the newest firings of every schedule.
        everything = (await admin.client.get("/schedules/events", headers=VIEWER)).json()
        assert [e["id"] for e in everything["events"]] == [newest["id"], fired["id"]]

        entry = (await admin.audit_entries(action="schedule.run"))[-1]
        assert (entry.actor, entry.target, entry.status.value) == ("olga", name, "ok")
        assert result["taskId"] in entry.detail

        assert_envelope(
            await admin.client.post("/schedules/missing/run", headers=OPERATOR), 404, "not_found"
        )


async def test_run_now_respects_the_overlap_policy(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(backend, queue_location, tmp_path) as admin:
        await create(admin, FULL_BODY)  # overlapPolicy forbid
        name = FULL_BODY["name"]
        first = (await admin.client.post(f"/schedules/{name}/run", headers=OPERATOR)).json()
        assert first["status"] == "enqueued"

        # Nothing enqueued: a conflict saying why, never a 200 a client reads as queued.
        response = await admin.client.post(f"/schedules/{name}/run", headers=OPERATOR)
        message = assert_envelope(response, 409, "schedule_run_skipped")
        assert "overlap" in message
        assert f"task {first['taskId']}" in message

        events = (
            await admin.client.get("/schedules/events", params={"name": name}, headers=VIEWER)
        ).json()["events"]
        skipped = events[0]
        assert (skipped["type"], skipped["reason"], skipped["status"]) == (
            "ScheduleSkipped",
            "overlap",
            "cancelled",
        )
        assert "overlap" in skipped["error"]
        # Its own id (items are keyed by taskId); the task it overlapped is in the metadata.
        assert skipped["taskId"] == f"skipped-{skipped['id']}"
        assert skipped["metadata"]["skip.task_id"] == first["taskId"]
        assert skipped["finishedAtMs"] == skipped["startedAtMs"]
        entries = await admin.audit_entries(action="schedule.run")
        assert entries[0].status.value == "error"
        assert entries[0].detail.startswith("409 schedule_run_skipped")


async def test_run_now_is_capped_per_schedule_and_the_refusal_audited(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(
        backend, queue_location, tmp_path, schedule_run_max=2, schedule_run_window=3600.0
    ) as admin:
        # Runs of a schedule that does not exist (yet) do not use up its allowance.
        for _ in range(3):
            response = await admin.client.post("/schedules/builtin.noop/run", headers=OPERATOR)
            assert_envelope(response, 404, "not_found")
        await create(admin, {"name": "builtin.noop", "spec": "@daily"})
        await create(admin, {"name": "reports.daily", "spec": "@daily"})

        for _ in range(2):
            response = await admin.client.post("/schedules/builtin.noop/run", headers=OPERATOR)
            assert response.json()["status"] == "enqueued"
        response = await admin.client.post("/schedules/builtin.noop/run", headers=OPERATOR)
        message = assert_envelope(response, 429, "schedule_run_limit_exceeded")
        assert "WORKER_ADMIN_SCHEDULE_RUN_MAX" in message

        response = await admin.client.post("/schedules/reports.daily/run", headers=OPERATOR)
        assert response.status_code == 200
        assert response.json()["status"] == "enqueued"

        tasks = [
            t
            for t in await _all_tasks(admin)
            if t.key is not None and t.key.startswith("schedule:builtin.noop:")
        ]
        assert len(tasks) == 2
        entries = await admin.audit_entries(action="schedule.run", target="builtin.noop")
        assert statuses(entries) == ["error", "error", "error", "ok", "ok", "error"]
        assert entries[0].detail.startswith("429 schedule_run_limit_exceeded")


async def _all_tasks(admin: FullAdmin) -> list[Any]:
    page = await admin.runtime.stores.queue.list_tasks(TaskFilter(), limit=1000, offset=0)
    return list(page.items)


# --- factories, roles, approval ---------------------------------------------------------


async def test_factories_are_listed_and_not_taken_for_a_schedule_name(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(backend, queue_location, tmp_path) as admin:
        response = await admin.client.get("/schedules/factories", headers=VIEWER)
        assert response.status_code == 200, response.text
        factories = response.json()["factories"]
        by_name = {f["name"]: f["description"] for f in factories}
        assert by_name["builtin.noop"] == "queue handler builtin.noop"
        assert "reports.daily" in by_name
        assert [f["name"] for f in factories] == sorted(by_name)

        doc = (await admin.client.get("/openapi.json", headers=VIEWER)).json()
        for path in (
            "/admin/v1/schedules",
            "/admin/v1/schedules/factories",
            "/admin/v1/schedules/events",
            "/admin/v1/schedules/pause",
            "/admin/v1/schedules/{name}",
            "/admin/v1/schedules/{name}/pause",
            "/admin/v1/schedules/{name}/run",
        ):
            assert path in doc["paths"], path


async def test_roles_are_enforced_and_refusals_audited(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(backend, queue_location, tmp_path) as admin:
        body = {"name": "builtin.noop", "spec": "@hourly"}
        client = admin.client
        assert_envelope(
            await client.post("/schedules", json=body, headers=VIEWER), 403, "forbidden"
        )
        assert_envelope(
            await client.post("/schedules", json=body, headers=OPERATOR), 403, "forbidden"
        )
        await create(admin, body)
        for method, path, action in (
            ("POST", "/schedules/builtin.noop/pause", "schedule.pause"),
            ("POST", "/schedules/pause", "schedule.pause_all"),
            ("POST", "/schedules/builtin.noop/run", "schedule.run"),
            ("DELETE", "/schedules/builtin.noop", "schedule.delete"),
        ):
            response = await client.request(method, path, headers=VIEWER)
            assert_envelope(response, 403, "forbidden")
            [entry] = await admin.audit_entries(action=action)
            assert (entry.actor, entry.status.value) == ("vic", "error")
        assert_envelope(
            await client.delete("/schedules/builtin.noop", headers=OPERATOR), 403, "forbidden"
        )
        shown = (await client.get("/schedules/builtin.noop", headers=VIEWER)).json()
        assert shown["schedule"]["status"] == "healthy"
        entries = await admin.audit_entries(action="schedule.create")
        assert [(e.actor, e.target, e.status.value) for e in reversed(entries)] == [
            ("vic", "builtin.noop", "error"),
            ("olga", "builtin.noop", "error"),
            ("alice", "builtin.noop", "ok"),
        ]
        assert (await client.get("/schedules")).status_code == 401


async def test_risky_schedule_mutations_need_approval(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(
        backend, queue_location, tmp_path, require_approval=True, approval_token=APPROVAL
    ) as admin:
        client = admin.client
        # Saving a schedule is not risky.
        await create(admin, {"name": "builtin.noop", "spec": "@hourly"})
        approved = {**OPERATOR, "X-Admin-Approval": APPROVAL}
        for method, path in (
            ("POST", "/schedules/builtin.noop/pause"),
            ("POST", "/schedules/pause"),
            ("POST", "/schedules/builtin.noop/run"),
        ):
            response = await client.request(method, path, headers=OPERATOR)
            assert_envelope(response, 403, "approval_required")
            response = await client.request(
                method, path, headers={**OPERATOR, "X-Admin-Approval": "wrong"}
            )
            assert_envelope(response, 403, "approval_required")
            response = await client.request(method, path, headers=approved)
            assert response.status_code == 200, (path, response.text)
        response = await client.delete("/schedules/builtin.noop", headers=ADMIN)
        assert_envelope(response, 403, "approval_required")
        response = await client.delete(
            "/schedules/builtin.noop", headers={**ADMIN, "X-Admin-Approval": APPROVAL}
        )
        assert response.status_code == 200
        for action in ("schedule.pause", "schedule.pause_all", "schedule.run"):
            entries = await admin.audit_entries(action=action)
            assert statuses(entries) == ["error", "error", "ok"], action
        assert statuses(await admin.audit_entries(action="schedule.delete")) == ["error", "ok"]


# --- last run -----------------------------------------------------------------------------


async def test_a_paused_schedules_last_run_is_its_last_firing(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with schedules_admin(backend, queue_location, tmp_path) as admin:
        runtime = admin.runtime
        name = "builtin.noop"
        await create(admin, {"name": name, "spec": "@every 1s", "factory": "builtin.noop"})
        scheduler = SchedulerService(
            store=runtime.stores.schedules,
            queue=runtime.stores.queue,
            factories=runtime.factories,
            events=runtime.events,
            instance="last-run-test",
            poll_interval=0.2,
            leader_retry=0.2,
        )

        async def shown() -> dict[str, Any]:
            response = await admin.client.get(f"/schedules/{name}", headers=VIEWER)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()["schedule"]
            return body

        async with scheduler:
            deadline = time.monotonic() + 20
            while (await shown())["lastRunMs"] == 0:
                assert time.monotonic() < deadline, "the schedule never fired"
                await asyncio.sleep(0.2)
            response = await admin.client.post(f"/schedules/{name}/pause", headers=OPERATOR)
            assert response.status_code == 200, response.text
            await asyncio.sleep(0.5)  # a firing already under way when it paused is written
            paused = await shown()
            tasks = len(await _all_tasks(admin))
            await asyncio.sleep(2.5)  # two ticks of the spec fall while it is paused
            later = await shown()
            assert later["status"] == "paused"
            assert later["previousTickMs"] > paused["lastRunMs"] + 1000
            assert later["lastRun"] == paused["lastRun"]
            assert later["lastRunMs"] == paused["lastRunMs"]
            assert len(await _all_tasks(admin)) == tasks

            response = await admin.client.post(
                f"/schedules/{name}/pause", json={"paused": False}, headers=OPERATOR
            )
            assert response.status_code == 200, response.text
            deadline = time.monotonic() + 10
            while (await shown())["lastRunMs"] == paused["lastRunMs"]:
                assert time.monotonic() < deadline, "the resumed schedule never fired"
                await asyncio.sleep(0.2)

"""``GET /audit``, ``GET /audit/export`` and ``GET /overview`` over a whole runtime (SQLite
and PostgreSQL): filters, 400s naming the parameter, streamed exports that parse back, and
the seed's overview shape from the queue's aggregates."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from admin.app import create_app
from admin.config import AdminConfig
from admin.routes import overview
from admin.services import AdminServices
from store.events import AuditLog, EventStoreOptions, FileEventStore
from store.queue.models import Failure, NewTask
from tests.integration.admin_harness import ADMIN, BASE, OPERATOR, TOKENS, VIEWER, full_admin

AUDIT_ROW = {
    "id",
    "atMs",
    "at",
    "actor",
    "requestId",
    "action",
    "target",
    "status",
    "payloadHash",
    "detail",
}


def assert_bad_request(response: httpx.Response, *names: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"]["code"] == "invalid_request"
    for name in names:
        assert name in body["error"]["message"]


async def _mutations(client: httpx.AsyncClient) -> None:
    """Five audited calls: four accepted, one refused (a viewer may not pause)."""
    for request in (
        client.post("/queues/mail/pause", json={"paused": True}, headers=OPERATOR),
        client.post("/queues/bulk/weight", json={"weight": 7}, headers=ADMIN),
        client.post("/pause", headers=OPERATOR),
        client.post("/resume", headers=OPERATOR),
        client.post("/pause", headers=VIEWER),
    ):
        response = await request
        assert response.status_code in (200, 403), response.text


async def test_audit_lists_every_mutation_newest_first(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        await _mutations(admin.client)

        response = await admin.client.get("/audit", headers=VIEWER)
        assert response.status_code == 200, response.text
        rows = response.json()["events"]
        assert [row["action"] for row in rows] == [
            "dequeue.pause",
            "dequeue.resume",
            "dequeue.pause",
            "queue.update_weight",
            "queue.pause",
        ]
        assert all(set(row) == AUDIT_ROW for row in rows)
        assert [row["id"] for row in rows] == sorted((row["id"] for row in rows), reverse=True)
        refused, resumed = rows[0], rows[1]
        assert (refused["actor"], refused["status"]) == ("vic", "error")
        assert "403" in refused["detail"]
        assert (resumed["actor"], resumed["status"], resumed["target"]) == ("olga", "ok", "*")
        assert resumed["detail"] == "paused=false"
        assert len(resumed["payloadHash"]) == 64
        moment = datetime.fromisoformat(resumed["at"])
        assert int(moment.timestamp() * 1000) == resumed["atMs"]
        stored = await admin.audit_entries(limit=5)
        assert [entry.id for entry in stored] == [row["id"] for row in rows]


async def test_audit_filters_by_action_target_actor_and_time(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        await _mutations(admin.client)
        client = admin.client

        async def actions(**params: Any) -> list[str]:
            response = await client.get("/audit", params=params, headers=VIEWER)
            assert response.status_code == 200, response.text
            return [row["action"] for row in response.json()["events"]]

        assert await actions(action="dequeue.pause") == ["dequeue.pause", "dequeue.pause"]
        assert await actions(target="bulk") == ["queue.update_weight"]
        assert await actions(actor="alice") == ["queue.update_weight"]
        assert await actions(actor="vic", action="dequeue.pause") == ["dequeue.pause"]
        assert await actions(action="", target="") == await actions()  # seed UI: empty = any
        assert await actions(limit=2) == ["dequeue.pause", "dequeue.resume"]

        rows = (await client.get("/audit", headers=VIEWER)).json()["events"]
        oldest, newest = rows[-1], rows[0]
        future = datetime.now(UTC) + timedelta(days=1)
        assert await actions(since=future.isoformat()) == []
        assert len(await actions(since=str(oldest["atMs"]))) == 5  # inclusive
        assert await actions(until=str(oldest["atMs"])) == []  # exclusive
        assert len(await actions(until=str(newest["atMs"] + 1))) == 5
        assert len(await actions(since=oldest["at"], until=future.isoformat())) == 5


async def test_bad_audit_parameters_are_400_naming_the_parameter(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        client = admin.client
        for params, name in (
            ({"since": "yesterday"}, "since"),
            ({"until": "2026-13-45T00:00:00Z"}, "until"),
            ({"since": "2026-01-02T03:04:05"}, "since"),  # no offset
            ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
            ({"limit": "0"}, "limit"),
            ({"limit": "5000"}, "limit"),
            ({"limit": "ten"}, "limit"),
        ):
            assert_bad_request(await client.get("/audit", params=params, headers=VIEWER), name)
        for params, name in (
            ({"format": "xml"}, "format"),
            ({"since": "soon"}, "since"),
            ({"limit": "-1"}, "limit"),
        ):
            response = await client.get("/audit/export", params=params, headers=VIEWER)
            assert_bad_request(response, name)
        assert (await client.get("/audit")).status_code == 401


TRICKY = '=HYPERLINK("http://x", "a, b")\nsecond line, with "quotes"'


async def test_the_export_parses_back_in_every_format(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        await _mutations(admin.client)
        await admin.audit.record(
            actor="-mallory",
            request_id="req-1",
            action="job.upsert",
            target="@nightly",
            status="ok",
            body=b'{"x": 1}',
            detail=TRICKY,
        )
        stored = list(reversed(await admin.audit_entries(limit=100)))  # oldest first

        response = await admin.client.get("/audit/export", params={"format": "csv"}, headers=VIEWER)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        disposition = response.headers["content-disposition"]
        assert re.fullmatch(r'attachment; filename="admin-audit-\d{10}\.csv"', disposition)
        rows = list(csv.reader(io.StringIO(response.text, newline="")))
        assert rows[0] == [
            "at",
            "actor",
            "request_id",
            "action",
            "target",
            "status",
            "payload_hash",
            "detail",
        ]
        assert len(rows) == 1 + len(stored)
        last = rows[-1]
        # Formula-looking cells get one leading quote; everything else survives as is.
        assert last[1] == "'-mallory"
        assert last[4] == "'@nightly"
        assert last[7] == "'" + TRICKY
        assert last[7][1:] == TRICKY
        assert [int(row[0]) for row in rows[1:]] == [int(e.at.timestamp() * 1000) for e in stored]
        assert [row[3] for row in rows[1:]] == [entry.action for entry in stored]

        response = await admin.client.get(
            "/audit/export", params={"format": "json"}, headers=VIEWER
        )
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["content-disposition"].endswith('.json"')
        objects = json.loads(response.text)
        assert [obj["id"] for obj in objects] == [entry.id for entry in stored]
        assert objects[-1]["detail"] == TRICKY
        assert objects[-1]["actor"] == "-mallory"
        assert {"atMs", "requestId", "payloadHash"} <= set(objects[-1])

        response = await admin.client.get("/audit/export", headers=VIEWER)  # jsonl default
        assert response.headers["content-type"].startswith("application/x-ndjson")
        assert response.headers["content-disposition"].endswith('.jsonl"')
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert lines == objects

        response = await admin.client.get(
            "/audit/export",
            params={"format": "JSONL", "action": "dequeue.pause", "actor": "olga"},
            headers=VIEWER,
        )
        filtered = [json.loads(line) for line in response.text.splitlines()]
        assert [(o["action"], o["actor"]) for o in filtered] == [("dequeue.pause", "olga")]

        # With a limit: the newest entries, the ones GET /audit lists (written oldest first).
        response = await admin.client.get(
            "/audit/export", params={"format": "csv", "limit": 2}, headers=VIEWER
        )
        rows = list(csv.reader(io.StringIO(response.text, newline="")))
        assert [row[2] for row in rows[1:]] == [entry.request_id for entry in stored[-2:]]


async def test_an_export_limit_above_the_cap_is_clamped_to_it(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    settings = {"admin_audit_export_limit_max": 3}
    async with full_admin(backend, queue_location, tmp_path, settings=settings) as admin:
        await _mutations(admin.client)
        response = await admin.client.get(
            "/audit/export", params={"format": "json", "limit": 1000}, headers=VIEWER
        )
        assert response.status_code == 200, response.text
        assert len(json.loads(response.text)) == 3
        response = await admin.client.get("/audit/export", headers=VIEWER)
        assert len(response.text.splitlines()) == 3


# --- overview -----------------------------------------------------------------------------


async def _backlog(queue: Any) -> None:
    """Three ready tasks in ``mail``, one scheduled for later, two dead in ``bulk``."""
    for n in range(3):
        await queue.enqueue(NewTask(handler="send", queue="mail", payload={"n": n}))
    later = datetime.now(UTC) + timedelta(hours=1)
    await queue.enqueue(NewTask(handler="send", queue="mail", payload={}, run_at=later))
    dead = []
    for n in range(2):
        result = await queue.enqueue(NewTask(handler="crunch", queue="bulk", payload={"n": n}))
        dead.append(result.task.id)
    claimed = await queue.claim("w1", 2, lease=timedelta(seconds=30), queues=["bulk"])
    assert len(claimed) == 2
    await queue.fail("w1", [Failure(task_id=i, error="boom", retry_at=None) for i in dead])


async def test_the_overview_has_the_seeds_shape_and_counts(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        await _backlog(admin.runtime.stores.queue)
        first = await admin.client.get("/overview", headers=VIEWER)
        assert first.status_code == 200, first.text
        body = first.json()
        assert {"stats", "coordination", "actions"} <= set(body)
        stats = body["stats"]
        assert {"activeWorkers", "queuedTasks", "queues", "avgLatencyMs", "p95LatencyMs"} <= set(
            stats
        )
        assert stats["queuedTasks"] == 4
        assert stats["readyTasks"] == 3
        assert stats["scheduledTasks"] == 1
        assert stats["deadTasks"] == 2
        assert stats["processingTasks"] == 0
        assert stats["queues"] == 2
        assert stats["activeRuns"] == 0
        assert stats["queuedRuns"] == 0
        assert stats["schedules"] == 0
        coordination = body["coordination"]
        assert {"globalRateLimit", "leaderLock", "lease", "paused"} <= set(coordination)
        assert coordination["paused"] is False
        assert coordination["pausedQueues"] == []
        assert body["actions"] | {"sinceMs": 0, "since": ""} == {
            "pause": 0,
            "resume": 0,
            "replay": 0,
            "sinceMs": 0,
            "since": "",
        }

        assert (await admin.client.post("/pause", headers=OPERATOR)).status_code == 200
        await admin.client.post("/queues/mail/pause", json={"paused": True}, headers=OPERATOR)
        await admin.client.post("/queues/mail/pause", json={"paused": False}, headers=OPERATOR)
        await admin.client.post("/queues/bulk/pause", json={"paused": True}, headers=OPERATOR)
        replay = await admin.client.post("/dlq/replay", json={"limit": 1}, headers=OPERATOR)
        assert replay.status_code == 200, replay.text
        await admin.client.post("/resume", headers=VIEWER)  # refused: not counted

        body = (await admin.client.get("/overview", headers=VIEWER)).json()
        assert body["coordination"]["paused"] is True
        assert body["coordination"]["pausedQueues"] == ["bulk"]
        assert body["stats"]["deadTasks"] == 1
        assert body["stats"]["queuedTasks"] == 5
        assert {k: body["actions"][k] for k in ("pause", "resume", "replay")} == {
            "pause": 3,
            "resume": 1,
            "replay": 1,
        }


async def test_the_overview_works_over_a_bare_queue(queue: Any, tmp_path: Path) -> None:
    """Without run store, schedules or event store: the queue's part, nulls for the rest."""
    async with await FileEventStore.open(EventStoreOptions(directory=tmp_path / "ev")) as store:
        app = create_app(
            services=AdminServices(queue=queue, audit=AuditLog(store)),
            config=AdminConfig(tokens=TOKENS),
        )
        await _backlog(queue)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            response = await client.get("/overview", headers=ADMIN)
            assert response.status_code == 200, response.text
            stats = response.json()["stats"]
            assert (stats["queuedTasks"], stats["deadTasks"]) == (4, 2)
            assert stats["activeRuns"] is None
            assert stats["schedules"] is None
            # The audit and event routes need the event store; they are not mounted.
            assert (await client.get("/audit", headers=ADMIN)).status_code == 404
            assert (await client.get("/events", headers=ADMIN)).status_code == 404


@pytest.mark.parametrize("path", ["/audit", "/audit/export", "/overview"])
async def test_a_viewer_may_read_and_no_one_without_credentials(
    path: str, backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        assert (await admin.client.get(path, headers=VIEWER)).status_code == 200
        assert (await admin.client.get(path)).status_code == 401


async def test_the_overview_is_shared_until_a_mutation_or_its_age_runs_out(
    backend: str, queue_location: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        queue = admin.runtime.stores.queue

        async def queued() -> int:
            response = await admin.client.get("/overview", headers=VIEWER)
            assert response.status_code == 200, response.text
            value: int = response.json()["stats"]["queuedTasks"]
            return value

        monkeypatch.setattr(overview, "MAX_AGE_SECONDS", 3600.0)
        assert await queued() == 0
        await queue.enqueue(NewTask(handler="send", queue="mail", payload={}))
        assert await queued() == 0  # a worker-side change waits for the age to run out ...
        await admin.client.post("/queues/mail/weight", json={"weight": 2}, headers=ADMIN)
        assert await queued() == 1  # ... a mutation through the API shows at once
        monkeypatch.setattr(overview, "MAX_AGE_SECONDS", 0.0)
        await queue.enqueue(NewTask(handler="send", queue="mail", payload={}))
        assert await queued() == 2


async def test_the_openapi_document_lists_audit_overview_and_events(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        response = await admin.client.get("/openapi.json", headers=VIEWER)
        assert response.status_code == 200, response.text
        paths = response.json()["paths"]
        for path in ("/audit", "/audit/export", "/overview", "/events"):
            assert f"/admin/v1{path}" in paths
        assert "422" not in json.dumps(paths)

"""The admin API over a real task queue (SQLite and PostgreSQL) and a real event store:
shapes, status codes, the error envelope, headers, limits, roles, approval and audit."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from admin.app import create_app
from admin.config import AdminConfig, Role
from admin.services import AdminServices
from store.errors import StoreUnavailable
from store.events import AuditEntry, AuditLog, AuditQuery, EventStoreOptions, FileEventStore
from store.queue.models import Failure, NewTask

BASE = "http://admin.test/admin/v1"
TOKENS = {"alice": "secret-admin", "olga": "secret-operator", "vic": "secret-viewer"}
ROLES = {"alice": Role.ADMIN, "olga": Role.OPERATOR, "vic": Role.VIEWER}
APPROVAL = "approve-me"


def as_(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


ADMIN, OPERATOR, VIEWER = as_("alice"), as_("olga"), as_("vic")


@dataclass
class Admin:
    client: httpx.AsyncClient
    queue: Any
    audit: AuditLog

    async def audit_entries(self, **query: Any) -> list[AuditEntry]:
        return await self.audit.recent(AuditQuery(**query))

    async def dead_tasks(
        self, count: int, *, queue: str = "default", handler: str = "send_email"
    ) -> list[int]:
        ids = []
        for n in range(count):
            result = await self.queue.enqueue(
                NewTask(handler=handler, queue=queue, payload={"n": n, "to": f"u{n}@example.com"})
            )
            ids.append(result.task.id)
        claimed = await self.queue.claim("w1", count, lease=timedelta(seconds=30), queues=[queue])
        assert len(claimed) == count
        await self.queue.fail("w1", [Failure(task_id=i, error="oops", retry_at=None) for i in ids])
        return ids


async def _admin(queue: Any, tmp_path: Path, **config: Any) -> AsyncIterator[Admin]:
    options = EventStoreOptions(directory=tmp_path / "events")
    async with await FileEventStore.open(options) as store:
        audit = AuditLog(store)
        settings = AdminConfig(
            tokens=TOKENS, roles=ROLES, replay_limit_max=5, replay_ids_max=3, **config
        )
        app = create_app(services=AdminServices(queue=queue, audit=audit), config=settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                yield Admin(client=client, queue=queue, audit=audit)


@pytest.fixture
async def admin(queue: Any, tmp_path: Path) -> AsyncIterator[Admin]:
    async for value in _admin(queue, tmp_path):
        yield value


@pytest.fixture
async def guarded(queue: Any, tmp_path: Path) -> AsyncIterator[Admin]:
    """An admin API that requires approval for risky mutations."""
    async for value in _admin(queue, tmp_path, require_approval=True, approval_token=APPROVAL):
        yield value


def assert_envelope(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"requestId", "error"}
    assert body["requestId"] == response.headers["x-request-id"]
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    assert message
    return message


# --- the edge: headers, request ids, envelope, limits -----------------------------------


async def test_every_response_carries_the_security_headers_and_a_request_id(admin: Admin) -> None:
    for response in (
        await admin.client.get("/health", headers=VIEWER),
        await admin.client.get("/nope", headers=VIEWER),
        await admin.client.get("/health"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
        uuid.UUID(response.headers["x-request-id"])


async def test_a_clients_request_id_is_echoed_as_sent_and_a_bad_one_replaced(admin: Admin) -> None:
    sent = str(uuid.uuid4())
    response = await admin.client.get("/health", headers={**VIEWER, "X-Request-Id": sent})
    assert response.headers["x-request-id"] == sent
    response = await admin.client.get("/health", headers={**VIEWER, "X-Request-Id": "ui.req-42_a"})
    assert response.headers["x-request-id"] == "ui.req-42_a"
    response = await admin.client.get(
        "/health", headers={**VIEWER, "X-Request-Id": "evil value\\with<chars>" + "x" * 80}
    )
    replaced = response.headers["x-request-id"]
    uuid.UUID(replaced)


async def test_unknown_routes_are_404_in_the_envelope(admin: Admin) -> None:
    response = await admin.client.get("/no/such/route", headers=VIEWER)
    assert "/admin/v1/no/such/route" in assert_envelope(response, 404, "not_found")
    response = await admin.client.put("/queues", headers=ADMIN)
    assert_envelope(response, 405, "method_not_allowed")


async def test_a_body_over_one_mib_is_refused_with_413_never_truncated(admin: Admin) -> None:
    big = b'{"weight": 3, "pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = await admin.client.post("/queues/big/weight", content=big, headers=ADMIN)
    assert_envelope(response, 413, "body_too_large")
    assert await admin.queue.get_queue("big") is None

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    response = await admin.client.post("/queues/big/weight", content=chunks(), headers=ADMIN)
    assert_envelope(response, 413, "body_too_large")


async def test_validation_errors_are_400_naming_the_field(admin: Admin) -> None:
    response = await admin.client.post("/queues/q/weight", json={"weight": "heavy"}, headers=ADMIN)
    assert "weight" in assert_envelope(response, 400, "invalid_request")
    response = await admin.client.post("/queues/q/weight", json={"weight": 0}, headers=ADMIN)
    assert "weight" in assert_envelope(response, 400, "invalid_request")
    response = await admin.client.post("/queues/q/weight", json={}, headers=ADMIN)
    assert "weight" in assert_envelope(response, 400, "invalid_request")
    response = await admin.client.post(
        "/queues/q/weight",
        content=b"{not json",
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert "not valid JSON" in assert_envelope(response, 400, "invalid_request")
    response = await admin.client.post("/queues/q/weight", content=b"[1]", headers=ADMIN)
    assert "JSON object" in assert_envelope(response, 400, "invalid_request")
    response = await admin.client.get("/dlq?limit=100000", headers=VIEWER)
    assert "limit" in assert_envelope(response, 400, "invalid_request")
    response = await admin.client.get("/tasks?state=sleeping", headers=VIEWER)
    assert "state" in assert_envelope(response, 400, "invalid_request")
    response = await admin.client.get("/dlq/abc", headers=VIEWER)
    assert "task_id" in assert_envelope(response, 400, "invalid_request")
    response = await admin.client.post(
        "/queues/bad name!/weight", json={"weight": 2}, headers=ADMIN
    )
    assert "queue name" in assert_envelope(response, 400, "invalid_request")
    # Refused mutations are audited too, with the actor.
    refused = await admin.audit_entries(action="queue.update_weight")
    assert len(refused) == 6, [e.detail for e in refused]
    assert {e.status.value for e in refused} == {"error"}
    assert {e.actor for e in refused} == {"alice"}


# --- authentication and roles -------------------------------------------------------------


async def test_without_credentials_every_route_is_401(admin: Admin) -> None:
    for method, path in (("GET", "/health"), ("GET", "/queues"), ("POST", "/pause")):
        response = await admin.client.request(method, path)
        assert_envelope(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"
    response = await admin.client.get("/queues", headers={"Authorization": "Bearer wrong"})
    assert_envelope(response, 401, "unauthenticated")
    assert not await admin.queue.is_global_paused()
    assert await admin.audit_entries() == []


async def test_a_viewer_reads_but_every_mutation_is_403_and_audited(admin: Admin) -> None:
    assert (await admin.client.get("/queues", headers=VIEWER)).status_code == 200
    mutations = [
        ("POST", "/queues/default/weight", {"weight": 2}, "queue.update_weight"),
        ("DELETE", "/queues/default/weight", None, "queue.reset_weight"),
        ("POST", "/queues/default/pause", {"paused": True}, "queue.pause"),
        ("POST", "/pause", None, "dequeue.pause"),
        ("POST", "/resume", None, "dequeue.resume"),
        ("POST", "/dlq/replay", {"limit": 1}, "dlq.replay"),
        ("POST", "/dlq/replay/ids", {"ids": ["1"]}, "dlq.replay_ids"),
        ("DELETE", "/dlq/1", None, "dlq.delete"),
        ("POST", "/dlq/purge", None, "dlq.purge"),
    ]
    for method, path, body, _ in mutations:
        response = await admin.client.request(method, path, json=body, headers=VIEWER)
        assert "viewer" in assert_envelope(response, 403, "forbidden")
    entries = await admin.audit_entries()
    assert sorted(e.action for e in entries) == sorted(m[3] for m in mutations)
    assert all(e.actor == "vic" and e.status.value == "error" for e in entries)
    assert all("403" in e.detail for e in entries)


async def test_an_operator_pauses_but_may_not_change_weights(admin: Admin) -> None:
    response = await admin.client.post("/pause", headers=OPERATOR)
    assert response.status_code == 200
    assert response.json() == {"paused": True}
    response = await admin.client.post(
        "/queues/default/weight", json={"weight": 5}, headers=OPERATOR
    )
    assert_envelope(response, 403, "forbidden")


# --- routes -----------------------------------------------------------------------------


async def test_health_reports_version_and_dequeue_state(admin: Admin) -> None:
    response = await admin.client.get("/health", headers=VIEWER)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["dequeuePaused"] is False
    assert set(body) == {
        "status",
        "version",
        "commit",
        "buildTime",
        "pythonVersion",
        "goVersion",
        "dequeuePaused",
    }
    # Seed 003 clients read these as strings; the runtime goes in its goVersion field.
    assert body["goVersion"] == f"python {body['pythonVersion']}"


async def test_queues_weight_creates_unknown_queue_and_reset_restores_default(admin: Admin) -> None:
    response = await admin.client.post("/queues/emails/weight", json={"weight": 3}, headers=ADMIN)
    assert response.status_code == 200, response.text
    queue = response.json()["queue"]
    assert queue["name"] == "emails"
    assert queue["weight"] == 3
    assert queue["weightOverridden"] is True
    for field in ("paused", "ready", "scheduled", "running", "processing", "dead", "completed"):
        assert field in queue

    listed = (await admin.client.get("/queues", headers=VIEWER)).json()
    assert [q["name"] for q in listed["queues"]] == ["emails"]
    assert listed["total"] == 1

    response = await admin.client.delete("/queues/emails/weight", headers=ADMIN)
    assert response.json()["queue"]["weightOverridden"] is False
    assert response.json()["queue"]["weight"] == 1

    one = await admin.client.get("/queues/emails", headers=VIEWER)
    assert one.json()["queue"]["name"] == "emails"
    missing = await admin.client.get("/queues/nothing", headers=VIEWER)
    assert_envelope(missing, 404, "not_found")

    entries = await admin.audit_entries(target="emails")
    assert [(e.action, e.status.value, e.actor) for e in reversed(entries)] == [
        ("queue.update_weight", "ok", "alice"),
        ("queue.reset_weight", "ok", "alice"),
    ]
    first = entries[-1]
    assert first.request_id
    assert first.payload_hash == hashlib.sha256(b'{"weight":3}').hexdigest()


async def test_a_queue_is_paused_and_resumed(admin: Admin) -> None:
    response = await admin.client.post(
        "/queues/default/pause", json={"paused": True}, headers=OPERATOR
    )
    assert response.json()["queue"]["paused"] is True
    assert (await admin.queue.get_queue("default")).paused
    response = await admin.client.post(
        "/queues/default/pause", json={"paused": False}, headers=OPERATOR
    )
    assert response.json()["queue"]["paused"] is False
    response = await admin.client.post(
        "/queues/default/pause", json={"paused": "yes"}, headers=OPERATOR
    )
    assert "paused" in assert_envelope(response, 400, "invalid_request")


async def test_global_pause_and_resume_accept_an_empty_body(admin: Admin) -> None:
    request_id = str(uuid.uuid4())
    response = await admin.client.post("/pause", headers={**OPERATOR, "X-Request-Id": request_id})
    assert response.status_code == 200
    assert await admin.queue.is_global_paused()
    assert (await admin.client.get("/health", headers=VIEWER)).json()["dequeuePaused"] is True
    response = await admin.client.post("/resume", content=b"", headers=OPERATOR)
    assert response.json() == {"paused": False}
    assert not await admin.queue.is_global_paused()
    entries = await admin.audit_entries(target="*")
    assert [(e.action, e.actor) for e in reversed(entries)] == [
        ("dequeue.pause", "olga"),
        ("dequeue.resume", "olga"),
    ]
    assert entries[-1].request_id == request_id


async def test_dlq_lists_filters_and_shows_entries(admin: Admin) -> None:
    ids = await admin.dead_tasks(3)
    other = await admin.dead_tasks(1, queue="reports", handler="build_report")
    response = await admin.client.get("/dlq?limit=2&offset=0", headers=VIEWER)
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 4
    assert len(body["entries"]) == 2
    assert (body["limit"], body["offset"]) == (2, 0)
    entry = body["entries"][0]
    assert entry["state"] == "dead"
    assert entry["lastError"] == "oops"
    assert isinstance(entry["id"], str)
    assert isinstance(entry["deadAtMs"], int)
    assert entry["deadAt"].endswith("Z")
    # Seed 003 clients read these, never null: age since dead-lettering, and when.
    assert entry["failedAtMs"] == entry["deadAtMs"]
    assert isinstance(entry["ageMs"], int)
    assert 0 <= entry["ageMs"] < 60_000
    assert entry["metadata"]["state"] == "dead"
    assert all(isinstance(v, str) for v in entry["metadata"].values())

    by_queue = (await admin.client.get("/dlq?queue=reports", headers=VIEWER)).json()
    assert [e["id"] for e in by_queue["entries"]] == [str(other[0])]
    by_handler = (await admin.client.get("/dlq?handler=send_email", headers=VIEWER)).json()
    assert by_handler["total"] == 3
    searched = (await admin.client.get("/dlq?query=u1@example", headers=VIEWER)).json()
    assert [e["id"] for e in searched["entries"]] == [str(ids[1])]

    detail = (await admin.client.get(f"/dlq/{ids[0]}", headers=VIEWER)).json()["entry"]
    assert detail["payload"] == {"n": 0, "to": "u0@example.com"}
    assert detail["payloadSize"] > 0
    assert isinstance(detail["ageMs"], int)
    assert isinstance(detail["failedAtMs"], int)
    assert isinstance(detail["updatedAtMs"], int)
    assert detail["lastError"] == "oops"
    missing = await admin.client.get("/dlq/999999", headers=VIEWER)
    assert_envelope(missing, 404, "not_found")

    stats = (await admin.client.get("/dlq/stats", headers=VIEWER)).json()["stats"]
    assert stats["total"] == 4
    assert stats["byQueue"] == {"default": 3, "reports": 1}
    assert stats["byHandler"] == {"send_email": 3, "build_report": 1}


async def test_dlq_replay_is_capped_with_429_and_audited(admin: Admin) -> None:
    await admin.dead_tasks(3)
    response = await admin.client.post("/dlq/replay", json={"limit": 6}, headers=OPERATOR)
    assert "cap" in assert_envelope(response, 429, "replay_limit_exceeded")
    response = await admin.client.post("/dlq/replay", json={"limit": 2}, headers=OPERATOR)
    assert response.status_code == 200
    body = response.json()
    assert body["replayed"] == 2
    assert body["moved"] == 2  # seed 003's name
    assert len(body["ids"]) == 2
    replayed = await admin.queue.get_task(int(body["ids"][0]))
    assert replayed.state.value == "ready"
    assert replayed.replayed_by == "olga"
    entries = await admin.audit_entries(action="dlq.replay")
    assert [(e.status.value, e.actor) for e in reversed(entries)] == [
        ("error", "olga"),
        ("ok", "olga"),
    ]
    assert "429" in entries[-1].detail
    # An empty body (seed 003's UI sends one) replays up to min(100, cap): the last one here.
    response = await admin.client.post("/dlq/replay", headers=OPERATOR)
    assert response.status_code == 200, response.text
    assert response.json()["replayed"] == 1
    assert response.json()["moved"] == 1


async def test_dlq_replay_by_ids_is_capped_and_ignores_live_tasks(admin: Admin) -> None:
    ids = await admin.dead_tasks(2)
    response = await admin.client.post(
        "/dlq/replay/ids", json={"ids": ["1", "2", "3", "4"]}, headers=OPERATOR
    )
    assert_envelope(response, 429, "replay_ids_exceeded")
    response = await admin.client.post(
        "/dlq/replay/ids", json={"ids": [str(ids[0]), ids[1], "424242"]}, headers=OPERATOR
    )
    assert response.status_code == 200, response.text
    assert sorted(response.json()["ids"]) == sorted(str(i) for i in ids)
    response = await admin.client.post("/dlq/replay/ids", json={"ids": ["x"]}, headers=OPERATOR)
    assert "ids[0]" in assert_envelope(response, 400, "invalid_request")
    response = await admin.client.post("/dlq/replay/ids", json={"ids": []}, headers=OPERATOR)
    assert "ids" in assert_envelope(response, 400, "invalid_request")


async def test_dlq_delete_and_purge(admin: Admin) -> None:
    ids = await admin.dead_tasks(3)
    response = await admin.client.delete(f"/dlq/{ids[0]}", headers=ADMIN)
    assert response.json() == {"deleted": 1}
    response = await admin.client.delete(f"/dlq/{ids[0]}", headers=ADMIN)
    assert_envelope(response, 404, "not_found")
    response = await admin.client.post("/dlq/purge", json={"olderThanSeconds": 3600}, headers=ADMIN)
    assert response.json() == {"purged": 0}
    response = await admin.client.post("/dlq/purge", headers=ADMIN)
    assert response.json() == {"purged": 2}
    entries = await admin.audit_entries(action="dlq.delete")
    assert [e.status.value for e in reversed(entries)] == ["ok", "error"]
    assert entries[0].target == str(ids[0])


async def test_tasks_are_listed_by_state_and_workers_with_heartbeats(admin: Admin) -> None:
    from store.queue.models import WorkerInfo

    await admin.queue.enqueue(NewTask(handler="a", payload={"x": 1}))
    await admin.queue.enqueue(NewTask(handler="b", queue="other"))
    await admin.dead_tasks(1, queue="dead-q")
    body = (await admin.client.get("/tasks?state=ready", headers=VIEWER)).json()
    assert body["total"] == 2
    assert {t["handler"] for t in body["tasks"]} == {"a", "b"}
    body = (await admin.client.get("/tasks?state=dead", headers=VIEWER)).json()
    assert [t["queue"] for t in body["tasks"]] == ["dead-q"]
    body = (await admin.client.get("/tasks?queue=other", headers=VIEWER)).json()
    assert [t["handler"] for t in body["tasks"]] == ["b"]

    await admin.queue.register_worker(
        WorkerInfo(worker_id="w-9", hostname="host", pid=42, concurrency=4, version="0.1.0")
    )
    workers = (await admin.client.get("/workers", headers=VIEWER)).json()
    assert workers["total"] == 1
    worker = workers["workers"][0]
    assert worker["workerId"] == "w-9"
    assert isinstance(worker["heartbeatAtMs"], int)


async def test_the_openapi_document_lists_the_routes_without_422(admin: Admin) -> None:
    response = await admin.client.get("/openapi.json", headers=VIEWER)
    assert response.status_code == 200
    doc = response.json()
    assert "/admin/v1/dlq/replay/ids" in doc["paths"]
    assert "/admin/v1/queues/{name}/weight" in doc["paths"]
    assert "422" not in json.dumps(doc)
    assert (await admin.client.get("/openapi.json")).status_code == 401


# --- approval -----------------------------------------------------------------------------


async def test_risky_mutations_need_the_approval_header(guarded: Admin) -> None:
    response = await guarded.client.post("/pause", headers=OPERATOR)
    assert_envelope(response, 403, "approval_required")
    response = await guarded.client.post(
        "/pause", headers={**OPERATOR, "X-Admin-Approval": "wrong"}
    )
    assert_envelope(response, 403, "approval_required")
    assert not await guarded.queue.is_global_paused()
    response = await guarded.client.post(
        "/pause", headers={**OPERATOR, "X-Admin-Approval": APPROVAL}
    )
    assert response.status_code == 200
    assert await guarded.queue.is_global_paused()
    # Weights are not a risky mutation; resume undoes a pause, so it is not either.
    response = await guarded.client.post("/queues/q/weight", json={"weight": 2}, headers=ADMIN)
    assert response.status_code == 200
    entries = await guarded.audit_entries(action="dequeue.pause")
    assert [e.status.value for e in reversed(entries)] == ["error", "error", "ok"]
    assert all(e.actor == "olga" for e in entries)


def test_requiring_approval_without_a_token_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="approval"):
        AdminConfig(require_approval=True)


async def test_a_malformed_body_without_credentials_is_401_not_400(admin: Admin) -> None:
    response = await admin.client.post(
        "/queues/q/weight", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert_envelope(response, 401, "unauthenticated")
    assert await admin.audit_entries() == []


class _BrokenQueue:
    """The real queue, except that pausing fails as a bug or a lost database would."""

    def __init__(self, queue: Any, error: Exception) -> None:
        self._queue = queue
        self._error = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    async def set_global_paused(self, paused: bool) -> None:
        raise self._error


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (RuntimeError("boom"), 500, "internal_error"),
        (StoreUnavailable("database is down"), 503, "unavailable"),
    ],
)
async def test_a_failing_store_gives_the_envelope_and_an_audited_error(
    queue: Any, tmp_path: Path, error: Exception, status: int, code: str
) -> None:
    async for admin in _admin(_BrokenQueue(queue, error), tmp_path):
        response = await admin.client.post("/pause", headers=OPERATOR)
        message = assert_envelope(response, status, code)
        assert "boom" not in message  # internals are logged, not sent
        assert response.headers["x-frame-options"] == "DENY"
        entries = await admin.audit_entries(action="dequeue.pause")
        assert [(e.status.value, e.actor) for e in entries] == [("error", "olga")]


# --- cross-site requests ----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "https://evil.example"}, id="foreign-origin"),
        pytest.param({"Origin": "null"}, id="null-origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="fetch-cross-site"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, id="fetch-same-site"),
        pytest.param({"Content-Type": "application/x-www-form-urlencoded"}, id="form-urlencoded"),
        pytest.param({"Content-Type": "text/plain"}, id="text-plain"),
        pytest.param({"Content-Type": "multipart/form-data; boundary=x"}, id="multipart"),
    ],
)
async def test_a_cross_site_or_form_mutation_is_refused_audited_and_changes_nothing(
    admin: Admin, headers: dict[str, str]
) -> None:
    response = await admin.client.post("/pause", headers={**ADMIN, **headers}, content=b"")
    assert response.status_code in (403, 415), response.text
    assert response.json()["error"]["code"] in ("cross_site_request", "unsupported_media_type")
    assert await admin.queue.is_global_paused() is False
    [entry] = await admin.audit_entries(action="dequeue.pause")
    assert entry.status.value == "error"
    assert entry.actor == "alice"


async def test_a_same_origin_browser_request_and_a_program_without_origin_are_accepted(
    admin: Admin,
) -> None:
    same = {"Origin": "http://admin.test", "Sec-Fetch-Site": "same-origin"}
    response = await admin.client.post("/pause", headers={**ADMIN, **same})
    assert response.status_code == 200, response.text
    response = await admin.client.post("/resume", headers=ADMIN)  # no Origin: a program
    assert response.status_code == 200, response.text
    assert await admin.queue.is_global_paused() is False

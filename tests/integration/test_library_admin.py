"""The admin API mounted in the user's FastAPI app: it answers under its prefix, the user's
auth decides the role, the audit log records that identity, and the registry's handlers
can be scheduled through it."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI, Request

import longshore
from tests.integration.library_harness import library_url

PREFIX = "/ops/longshore"
API = f"http://app{PREFIX}/admin/v1"
USERS = {"alice": "admin", "olga": "operator", "vic": "viewer"}


def who_is_it(request: Request) -> tuple[str, str] | None:
    """The host app's own auth: here, a session header naming a known user."""
    user = request.headers.get("x-user")
    return (user, USERS[user]) if user in USERS else None


def as_(user: str) -> dict[str, str]:
    return {"X-User": user}


@pytest.fixture
async def app(backend, queue_location, tmp_path):
    client = longshore.Client(library_url(backend, queue_location), events_dir=tmp_path / "ev")
    registry = longshore.Registry()

    @registry.handler("nightly_report", schedulable=True)
    async def nightly_report(payload: dict) -> None: ...

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        async with client:
            yield

    host = FastAPI(lifespan=lifespan)
    host.mount(PREFIX, longshore.admin_app(client, auth=who_is_it, registry=registry))

    @host.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    async with host.router.lifespan_context(host):
        host.state.client = client
        yield host


@pytest.fixture
async def http(app):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as opened:
        yield opened


async def test_the_admin_api_answers_under_its_prefix_beside_the_apps_own_routes(http):
    health = await http.get(f"{API}/health", headers=as_("vic"))
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert (await http.get("/hello")).json() == {"hello": "world"}
    assert (await http.get("/admin/v1/health", headers=as_("vic"))).status_code == 404


async def test_the_users_auth_decides_who_may_do_what(http):
    refused = await http.get(f"{API}/queues")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"

    assert (await http.get(f"{API}/queues", headers=as_("vic"))).status_code == 200
    forbidden = await http.post(f"{API}/pause", headers=as_("vic"))
    assert forbidden.status_code == 403
    assert "'viewer' of 'vic'" in forbidden.json()["error"]["message"]
    assert (await http.post(f"{API}/pause", headers=as_("olga"))).status_code == 200
    assert (await http.post(f"{API}/resume", headers=as_("olga"))).status_code == 200


async def test_mutations_are_audited_with_the_users_identity(http):
    await http.post(f"{API}/pause", headers=as_("vic"))
    await http.post(f"{API}/pause", headers=as_("olga"))

    audit = (await http.get(f"{API}/audit", headers=as_("alice"))).json()
    rows = [(row["actor"], row["action"], row["status"]) for row in audit["events"]]
    assert ("vic", "dequeue.pause", "error") in rows
    assert ("olga", "dequeue.pause", "ok") in rows


async def test_the_openapi_document_is_served_under_the_prefix(http):
    document = (await http.get(f"{API}/openapi.json", headers=as_("vic"))).json()
    assert document["servers"] == [{"url": PREFIX}]
    assert "/admin/v1/health" in document["paths"]
    assert "/admin/v1/schedules" in document["paths"]


async def test_a_schedulable_handler_can_be_scheduled_through_the_mounted_api(app, http):
    created = await http.post(
        f"{API}/schedules",
        headers=as_("alice"),
        json={"name": "nightly", "spec": "0 3 * * *", "factory": "nightly_report"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["schedule"]["factory"] == "nightly_report"
    unknown = await http.post(
        f"{API}/schedules",
        headers=as_("alice"),
        json={"name": "weekly", "spec": "0 3 * * 0", "factory": "no_such_handler"},
    )
    assert unknown.status_code == 412
    factories = (await http.get(f"{API}/schedules/factories", headers=as_("vic"))).json()
    assert "nightly_report" in [f["name"] for f in factories["factories"]]

    run = await http.post(f"{API}/schedules/nightly/run", headers=as_("olga"))
    assert run.status_code == 200, run.text
    client: longshore.Client = app.state.client
    tasks = await client.list_tasks(handler="nightly_report")
    assert tasks.total == 1


async def test_mounting_without_an_event_store_is_refused_on_first_use(backend, queue_location):
    client = longshore.Client(library_url(backend, queue_location))
    mounted = longshore.admin_app(client, auth=who_is_it)
    async with client:
        with pytest.raises(longshore.LibraryError, match="events_dir"):
            _ = mounted.app

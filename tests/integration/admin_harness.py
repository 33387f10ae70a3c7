"""The admin API over a whole runtime: every collaborator of :class:`AdminServices` opened
the way ``longshore serve`` opens it (``open_runtime``), on SQLite or PostgreSQL, reached in
process through ``httpx.ASGITransport``.

The runtime is opened with ``role="worker"``: nothing fires schedules on its own and no
worker claims tasks unless a test starts one, so tests decide when work happens
(:meth:`FullAdmin.work` runs one worker pass over the queue).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from admin.app import create_app
from admin.config import AdminConfig, Role
from admin.services import AdminServices
from service.lifecycle import Runtime, open_runtime
from service.settings import load_settings
from store.events import AuditEntry, AuditLog, AuditQuery

BASE = "http://admin.test/admin/v1"
TOKENS = {"alice": "secret-admin", "olga": "secret-operator", "vic": "secret-viewer"}
ROLES = {"alice": Role.ADMIN, "olga": Role.OPERATOR, "vic": Role.VIEWER}
APPROVAL = "approve-me"


def as_(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


ADMIN, OPERATOR, VIEWER = as_("alice"), as_("olga"), as_("vic")


@dataclass
class FullAdmin:
    client: httpx.AsyncClient
    runtime: Runtime
    services: AdminServices
    audit: AuditLog

    async def audit_entries(self, **query: Any) -> list[AuditEntry]:
        return await self.audit.recent(AuditQuery(**query))


@asynccontextmanager
async def full_admin(
    backend: str,
    location: Any,
    tmp_path: Path,
    *,
    settings: dict[str, Any] | None = None,
    **config: Any,
) -> AsyncIterator[FullAdmin]:
    """The admin app over a fresh runtime. ``location`` is the ``queue_location`` fixture
    (a SQLite path or a PostgreSQL URL); ``settings`` are ``Settings`` overrides and
    ``config`` :class:`AdminConfig` overrides."""
    overrides: dict[str, Any] = {"data_dir": tmp_path / "data", **(settings or {})}
    if backend == "postgres":
        overrides.setdefault("database_url", str(location))
    runtime_settings = load_settings({}, **overrides)
    async with open_runtime(runtime_settings, role="worker") as runtime:
        audit = AuditLog(runtime.events)
        services = AdminServices(
            queue=runtime.stores.queue,
            audit=audit,
            events=runtime.events,
            jobs=runtime.stores.jobs,
            runs=runtime.stores.runs,
            runner=runtime.job_runner,
            artifacts=runtime.artifacts,
            schedules=runtime.manager,
            secrets=runtime.stores.secrets,
            notifications=runtime.stores.notifications,
            notification_tests=runtime.notifier,
        )
        roles = {**ROLES, **config.pop("roles", {})}
        admin_config = AdminConfig(tokens=TOKENS, roles=roles, **config)
        app = create_app(services=services, config=admin_config)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                yield FullAdmin(client=client, runtime=runtime, services=services, audit=audit)

"""The admin API inside your own FastAPI or Starlette app.

::

    app.mount("/ops/longshore", longshore.admin_app(client, auth=who_is_it, registry=registry))

serves ``/ops/longshore/admin/v1/...`` (the OpenAPI document at
``/ops/longshore/admin/v1/openapi.json``, its ``servers`` naming the prefix; the
``longshore`` CLI works with ``--url https://host/ops/longshore``). ``auth(request)``
returns ``(actor, role)`` — role ``viewer``, ``operator`` or ``admin`` — or ``None`` to
refuse with 401; the actor is who the audit log records. Roles, guardrails (replay caps,
run-now rate limits, approval) and the audit of every mutation work as in
``longshore serve``.
"""

from __future__ import annotations

import dataclasses
from importlib import metadata

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from admin.app import create_app
from admin.config import AdminConfig, HostAuth
from admin.services import AdminServices
from longshore.client import Client
from longshore.errors import LibraryError
from longshore.handlers import Registry
from longshore.schedules import build_factories
from scheduler.manager import ScheduleManager
from service.backends import Stores
from store.events.audit import AuditLog

__all__ = ["AdminConfig", "AdminMount", "admin_app"]


class AdminMount:
    """The ASGI app :func:`admin_app` returns: builds the admin API over the client's open
    stores on the first request (and again if the client was reopened), so it can be
    mounted when your app is built, before its lifespan opens the client."""

    def __init__(
        self, client: Client, auth: HostAuth, registry: Registry, config: AdminConfig
    ) -> None:
        self._client = client
        self._registry = registry
        self._config = dataclasses.replace(config, host_auth=auth, console=False)
        self._app: FastAPI | None = None
        self._built_on: Stores | None = None

    @property
    def app(self) -> FastAPI:
        """The admin API (a FastAPI app) over the client's current stores."""
        stores = self._client.stores  # raises LibraryError when the client is not open
        if self._app is None or self._built_on is not stores:
            self._app = self._build(stores)
            self._built_on = stores
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # a mount is not sent the host's lifespan; be safe
            return
        await self.app(scope, receive, send)

    def _build(self, stores: Stores) -> FastAPI:
        events = self._client.events
        if events is None:
            raise LibraryError(
                "admin_app needs a client opened with events_dir=... (for the audit log)"
            )
        factories = build_factories(self._registry, self._client)
        services = AdminServices(
            queue=stores.queue,
            audit=AuditLog(events),
            events=events,
            jobs=stores.jobs,
            runs=stores.runs,
            schedules=ScheduleManager(
                store=stores.schedules, queue=stores.queue, factories=factories, events=events
            ),
        )
        return create_app(services=services, config=self._config)


def admin_app(
    client: Client,
    *,
    auth: HostAuth,
    registry: Registry | None = None,
    config: AdminConfig | None = None,
) -> AdminMount:
    """The admin API over ``client``'s database, authenticated by ``auth``, to mount.

    ``client`` must be open by the first request (e.g. opened in your app's lifespan) and
    have an event store (``Client(..., events_dir=...)``): it holds the audit log and feeds
    the live stream. ``registry`` makes its schedule factories schedulable through the API.
    ``config`` sets the guardrails (:class:`admin.config.AdminConfig`: replay caps, run-now
    limits, approval); its token and role settings are unused, ``auth`` decides.
    """
    return AdminMount(
        client, auth, registry or Registry(), config or AdminConfig(version=_version())
    )


def _version() -> str:
    try:
        return metadata.version("longshore")
    except metadata.PackageNotFoundError:
        return "0.0.0"

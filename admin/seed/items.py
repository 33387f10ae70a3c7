"""The seed-shaped items of an app, built once for the routes and the stream alike.

``GET /jobs/events``, ``GET /schedules/events`` and ``GET /audit`` answer with these
items, and the ``/events`` stream's ``job_events``, ``schedule_events`` and
``audit_events`` snapshots carry exactly the same ones (a seed 003 client merges the
snapshot items into what the routes gave it, by ``taskId``).
"""

from __future__ import annotations

from typing import Any, Final

from starlette.applications import Starlette

from admin.schemas import Schema
from admin.schemas_events import AuditRow
from admin.seed.job_events import job_event_items
from admin.seed.output_tail import OutputTails
from admin.seed.schedule_events import schedule_event_items
from admin.services import AdminServices
from store.events import AuditQuery

UNFINISHED_OMITS: Final = frozenset({"finished_at", "finished_at_ms"})
"""Fields left out of the item of something unfinished (absent, never 0 or null: seed
clients sort by ``finishedAtMs ?? startedAtMs``)."""


def item_json(item: Schema) -> dict[str, Any]:
    """An item's camelCase object, without the finish fields while they are unset."""
    unset = {name for name in UNFINISHED_OMITS if getattr(item, name, None) is None}
    return item.model_dump(mode="json", by_alias=True, exclude=unset)


class SeedItems:
    """Builds the seed-shaped items over an app's collaborators (see the module
    docstring); one per app, holding the cache of output tails."""

    def __init__(self, services: AdminServices) -> None:
        self._services = services
        self._tails = OutputTails(services.artifacts)

    async def job_events(self, name: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` runs of job ``name`` (of every job), newest first."""
        services = self._services
        if services.runs is None:
            return []
        items = await job_event_items(
            runs=services.runs,
            jobs=services.jobs,
            schedules=services.schedules,
            tails=self._tails,
            name=name,
            limit=limit,
        )
        return [item_json(item) for item in items]

    async def schedule_events(self, name: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` firings of schedule ``name`` (of every schedule), newest
        first."""
        services = self._services
        if services.events is None:
            return []
        items = await schedule_event_items(
            events=services.events,
            queue=services.queue,
            runs=services.runs,
            schedules=services.schedules,
            tails=self._tails,
            name=name,
            limit=limit,
        )
        return [item_json(item) for item in items]

    async def audit_events(self, query: AuditQuery) -> list[dict[str, Any]]:
        """The newest audit entries matching ``query``, newest first."""
        entries = await self._services.audit.recent(query)
        return [AuditRow.of(entry).model_dump(mode="json", by_alias=True) for entry in entries]


def seed_items_of(app: Starlette, services: AdminServices) -> SeedItems:
    """The app's :class:`SeedItems`, created on first use."""
    found: SeedItems | None = getattr(app.state, "admin_seed_items", None)
    if found is None:
        found = app.state.admin_seed_items = SeedItems(services)
    return found

"""The service's background work: typed handlers, a hook and a plugin on one registry."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

import longshore

logger = logging.getLogger(__name__)


class WelcomeEmail(BaseModel):
    user_id: int
    email: str


class PurgeSignups(BaseModel):
    older_than_days: int = Field(default=30, ge=1)


def build_registry(pool: Callable[[], Any]) -> longshore.Registry:
    """The handlers, over the service's own database pool (``pool()`` once it is open)."""
    registry = longshore.Registry()
    registry.use(longshore.DlqCleanup())

    @registry.handler("send_welcome")
    async def send_welcome(payload: WelcomeEmail, ctx: longshore.Context) -> None:
        # A real service would call its mail provider here; this one records the mail.
        await pool().execute(
            "INSERT INTO sent_emails (user_id, email, task_id) VALUES ($1, $2, $3)",
            payload.user_id,
            payload.email,
            ctx.task_id,
        )

    @registry.handler("purge_signups", schedulable=True)
    async def purge_signups(payload: PurgeSignups) -> None:
        deleted = await pool().fetchval(
            """
            WITH gone AS (
                DELETE FROM users WHERE created_at < now() - make_interval(days => $1)
                RETURNING 1
            )
            INSERT INTO purges (deleted) SELECT count(*) FROM gone RETURNING deleted
            """,
            payload.older_than_days,
        )
        logger.info("purged old signups", extra={"deleted": deleted})

    @registry.on("dead_lettered")
    async def alert(event: longshore.TaskEvent) -> None:
        logger.error("task dead-lettered", extra={"task_id": event.task.id, "error": event.error})

    return registry

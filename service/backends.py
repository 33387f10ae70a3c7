"""Picks and opens the store backend named by ``WORKER_DATABASE_URL``.

- unset: the embedded SQLite file ``<WORKER_DATA_DIR>/longshore.db``;
- ``sqlite:///absolute/path.db`` or ``sqlite:relative/path.db``: that SQLite file;
- ``postgresql://...`` (or ``postgres://...``): PostgreSQL through a connection pool.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from service.errors import SettingsError
from service.settings import Settings
from store.jobs.protocol import JobStore, RunStore
from store.notifications.protocol import NotificationStore
from store.queue.protocol import TaskQueue
from store.schedules.protocol import ScheduleStore
from store.secrets.crypto import SecretBox
from store.secrets.protocol import SecretStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where the store lives, for messages that must not show a password."""

    backend: str
    location: str


def resolve_target(settings: Settings) -> tuple[Target, str]:
    """The backend kind and its location (sqlite path or postgres URL)."""
    url = settings.database_url
    if not url:
        path = settings.data_dir / "longshore.db"
        return Target(backend="sqlite", location=str(path)), str(path)
    scheme = url.split(":", 1)[0].lower()
    if scheme in {"postgresql", "postgres"}:
        parts = urlsplit(url)
        shown = f"postgresql://{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
        return Target(backend="postgres", location=shown), url
    if scheme == "sqlite":
        rest = url[len("sqlite:") :]
        path_text = rest[2:] if rest.startswith("//") else rest
        if not path_text:
            raise SettingsError("WORKER_DATABASE_URL: sqlite URL names no file")
        return Target(backend="sqlite", location=path_text), path_text
    raise SettingsError(
        f"WORKER_DATABASE_URL: unsupported scheme {scheme!r} "
        "(use postgresql://... or sqlite:///path, or leave it unset for the embedded store)"
    )


@dataclass(frozen=True, kw_only=True)
class Stores:
    """The queue, the job/run stores, the schedule store and the notification rules, all on
    one open database."""

    queue: TaskQueue
    jobs: JobStore
    runs: RunStore
    schedules: ScheduleStore
    secrets: SecretStore
    secrets_box: SecretBox
    """The key of ``secrets`` and of the notification rules' secrets (read or made on first
    use; :meth:`SecretBox.load` forces it)."""
    notifications: NotificationStore


@asynccontextmanager
async def open_queue(settings: Settings, *, migrate: bool = True) -> AsyncIterator[TaskQueue]:
    """Open the configured backend (applying migrations unless told not to), apply the
    configured queue defaults, and close everything on exit."""
    async with open_store(settings, migrate=migrate) as stores:
        yield stores.queue


@asynccontextmanager
async def open_store(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Stores]:
    """As :func:`open_queue`, yielding the queue, the job and run stores and the schedule
    store built on the same database (the schedule store's own resources, e.g. its LISTEN
    connection, are closed before the database)."""
    target, location = resolve_target(settings)
    retention = timedelta(seconds=settings.key_retention_seconds)
    # Read (or made, 0600) when first needed: ``serve`` and ``worker`` load it at start.
    box = SecretBox(settings.secrets_key_path)
    queue: TaskQueue
    schedules: ScheduleStore
    if target.backend == "postgres":
        from store.db.postgres import PostgresDatabase
        from store.jobs.postgres import PostgresJobStore, PostgresRunStore
        from store.notifications.postgres import PostgresNotificationStore
        from store.queue.postgres import PostgresTaskQueue
        from store.schedules.postgres import PostgresScheduleStore
        from store.secrets.postgres import PostgresSecretStore

        pg = await PostgresDatabase.open(location, max_size=max(4, settings.concurrency // 4))
        try:
            if migrate:
                await pg.migrate()
            queue = PostgresTaskQueue(pg, key_retention=retention)
            schedules = PostgresScheduleStore(pg)
            try:
                await _apply_queue_defaults(queue, settings)
                yield Stores(
                    queue=queue,
                    jobs=PostgresJobStore(pg),
                    runs=PostgresRunStore(pg),
                    schedules=schedules,
                    secrets=PostgresSecretStore(pg, box),
                    secrets_box=box,
                    notifications=PostgresNotificationStore(pg, box),
                )
            finally:
                await schedules.close()
                await queue.close()
        finally:
            await pg.close()
    else:
        from store.db.sqlite import SqliteDatabase
        from store.jobs.sqlite import SqliteJobStore, SqliteRunStore
        from store.notifications.sqlite import SqliteNotificationStore
        from store.queue.sqlite import SqliteTaskQueue
        from store.schedules.sqlite import SqliteScheduleStore
        from store.secrets.sqlite import SqliteSecretStore

        Path(location).parent.mkdir(parents=True, exist_ok=True)
        lite = await SqliteDatabase.open(location)
        try:
            if migrate:
                await lite.migrate()
            queue = SqliteTaskQueue(lite, key_retention=retention)
            schedules = SqliteScheduleStore(lite)
            try:
                await _apply_queue_defaults(queue, settings)
                yield Stores(
                    queue=queue,
                    jobs=SqliteJobStore(lite),
                    runs=SqliteRunStore(lite),
                    schedules=schedules,
                    secrets=SqliteSecretStore(lite, box),
                    secrets_box=box,
                    notifications=SqliteNotificationStore(lite, box),
                )
            finally:
                await schedules.close()
                await queue.close()
        finally:
            await lite.close()


async def _apply_queue_defaults(queue: TaskQueue, settings: Settings) -> None:
    if settings.admin_queue_weights:
        await queue.set_default_weights(settings.admin_queue_weights)
    for name, limit in settings.queue_concurrency.items():
        await queue.set_queue_concurrency(name, limit)


async def open_database_and_migrate(settings: Settings) -> list[int]:
    """Open the configured database, apply pending migrations, return their versions."""
    target, location = resolve_target(settings)
    if target.backend == "postgres":
        from store.db.postgres import PostgresDatabase

        pg = await PostgresDatabase.open(location, min_size=1, max_size=1)
        try:
            return await pg.migrate()
        finally:
            await pg.close()
    from store.db.sqlite import SqliteDatabase

    Path(location).parent.mkdir(parents=True, exist_ok=True)
    lite = await SqliteDatabase.open(location)
    try:
        return await lite.migrate()
    finally:
        await lite.close()

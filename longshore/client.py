"""The client: enqueue, inspect and manage tasks on a Longshore database from your code.

::

    async with longshore.Client("postgresql://localhost/app") as client:
        await client.enqueue("send_email", SendEmail(to="a@example.com"), key="welcome-42")

The database is opened as ``longshore serve`` opens it (``service.backends``: migrations
applied, the SQLite file or the PostgreSQL pool), so the same tasks are seen by the CLI,
the admin API and every worker. Nothing is read from the environment: what the client
needs is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from longshore.errors import LibraryError
from longshore.tasks import BULK, CRITICAL, FAST, HandlerRef, Preset, new_task
from service.backends import Stores, open_store, resolve_target
from service.runtime import event_store_options
from service.settings import Settings, load_settings
from store.events.file import FileEventStore
from store.queue.models import (
    DeadFilter,
    DeadStats,
    EnqueueResult,
    KeyMode,
    NewTask,
    Page,
    Task,
    TaskFilter,
    TaskState,
)
from store.queue.protocol import TaskQueue
from store.queue.retry import RetryPolicy

__all__ = ["Client"]

LIBRARY_ACTOR = "library"
"""Who replayed a dead task, when the caller does not say."""


class Client:
    """A connection to one Longshore database; use as ``async with Client(url) as c:``.

    ``url``: ``postgresql://...``, ``sqlite:///path.db``, or ``None`` for the embedded
    SQLite file in ``data_dir`` (default ``./longshore-data``, as ``longshore serve``).
    ``events_dir`` opens the event store there (needed by :func:`longshore.admin_app` for
    its audit log and live stream); ``event_retention`` runs its retention in this process
    (turn it off when ``longshore serve`` shares the directory). ``key_retention`` is how
    long a completed keyed task keeps its key for ``dedupe``. ``pool_size`` bounds the
    PostgreSQL pool (about a quarter of a worker's concurrency is plenty).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        data_dir: str | Path | None = None,
        events_dir: str | Path | None = None,
        event_retention: bool = True,
        key_retention: timedelta = timedelta(days=7),
        pool_size: int = 4,
        migrate: bool = True,
    ) -> None:
        overrides: dict[str, Any] = {
            "key_retention_seconds": key_retention.total_seconds(),
            # The pool is sized from the concurrency (a quarter of it, at least 4).
            "concurrency": max(1, min(pool_size * 4, 1024)),
        }
        if url is not None:
            overrides["database_url"] = url
        if data_dir is not None:
            overrides["data_dir"] = Path(data_dir)
        if events_dir is not None:
            overrides["job_event_dir"] = Path(events_dir)
        self._settings: Settings = load_settings(env={}, **overrides)
        self._with_events = events_dir is not None
        self._event_retention = event_retention
        self._migrate = migrate
        self._stack: AsyncExitStack | None = None
        self._stores: Stores | None = None
        self._events: FileEventStore | None = None
        self.backend = resolve_target(self._settings)[0].backend
        """``"sqlite"`` or ``"postgres"``."""

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> Self:
        """Open the database (and the event store, when asked for); see the class."""
        if self._stack is not None:
            raise LibraryError("this client is already open")
        stack = AsyncExitStack()
        try:
            self._stores = await stack.enter_async_context(
                open_store(self._settings, migrate=self._migrate)
            )
            if self._with_events:
                options = event_store_options(self._settings, retention=self._event_retention)
                self._events = await FileEventStore.open(options)
                stack.push_async_callback(self._events.close)
        except BaseException:
            await stack.aclose()
            self._stores = self._events = None
            raise
        self._stack = stack
        return self

    async def close(self) -> None:
        """Close what :meth:`open` opened (event store first, database last)."""
        stack, self._stack = self._stack, None
        self._stores = self._events = None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def stores(self) -> Stores:
        """The open stores (queue, jobs, runs, schedules): the layer below, for what the
        client does not wrap."""
        if self._stores is None:
            raise LibraryError("the client is not open: use `async with Client(...)`")
        return self._stores

    @property
    def queue(self) -> TaskQueue:
        """The task queue (:class:`store.queue.protocol.TaskQueue`)."""
        return self.stores.queue

    @property
    def events(self) -> FileEventStore | None:
        """The event store, when the client was opened with ``events_dir``."""
        return self._events

    @property
    def key_retention(self) -> timedelta:
        return timedelta(seconds=self._settings.key_retention_seconds)

    # --- enqueueing ----------------------------------------------------------------------------

    async def enqueue(
        self,
        handler: str | HandlerRef,
        payload: Any = None,
        *,
        queue: str = "default",
        priority: int | str = 0,
        run_at: datetime | timedelta | None = None,
        key: str | None = None,
        key_mode: KeyMode | str = KeyMode.REPLACE,
        max_attempts: int | None = None,
        retry: str | RetryPolicy | None = None,
        connection: Any = None,
    ) -> EnqueueResult:
        """Enqueue one task (arguments as :func:`longshore.new_task`).

        With ``connection`` (an asyncpg connection, PostgreSQL only) the task is written
        in that connection's current transaction: it exists for workers once the
        transaction commits, and not at all if it rolls back.
        """
        task = new_task(
            handler,
            payload,
            queue=queue,
            priority=priority,
            run_at=run_at,
            key=key,
            key_mode=key_mode,
            max_attempts=max_attempts,
            retry=retry,
        )
        return (await self.enqueue_many([task], connection=connection))[0]

    async def enqueue_many(
        self, tasks: Iterable[NewTask], *, connection: Any = None
    ) -> list[EnqueueResult]:
        """Enqueue tasks built with :func:`longshore.new_task` in one transaction (all or
        none), results in input order; ``connection`` as in :meth:`enqueue`."""
        batch = list(tasks)
        if connection is None:
            return await self.queue.enqueue_many(batch)
        if self.backend != "postgres":
            raise LibraryError("enqueueing on your own connection needs PostgreSQL")
        from store.queue.in_transaction import enqueue_in_transaction

        return await enqueue_in_transaction(connection, batch, key_retention=self.key_retention)

    async def _preset(
        self, preset: Preset, handler: str | HandlerRef, payload: Any, options: dict[str, Any]
    ) -> EnqueueResult:
        options.setdefault("queue", preset.queue)
        options.setdefault("priority", preset.priority)
        options.setdefault("retry", preset.retry)
        return await self.enqueue(handler, payload, **options)

    async def enqueue_fast(
        self, handler: str | HandlerRef, payload: Any = None, **options: Any
    ) -> EnqueueResult:
        """Latency-sensitive work: queue ``fast``, priority ``fast_default`` (0), ``fast``
        retries (3 attempts, 100 ms growing to 30 s). ``options`` as :meth:`enqueue`."""
        return await self._preset(FAST, handler, payload, options)

    async def enqueue_bulk(
        self, handler: str | HandlerRef, payload: Any = None, **options: Any
    ) -> EnqueueResult:
        """Background work: queue ``bulk``, priority ``bulk_default`` (10),
        ``conservative`` retries (4 attempts, 30 s growing to 1 h)."""
        return await self._preset(BULK, handler, payload, options)

    async def enqueue_critical(
        self, handler: str | HandlerRef, payload: Any = None, **options: Any
    ) -> EnqueueResult:
        """Work that must get through: queue ``fast``, priority ``fast_high`` (-10),
        ``aggressive`` retries (12 attempts, 500 ms growing to 5 min)."""
        return await self._preset(CRITICAL, handler, payload, options)

    # --- tasks -------------------------------------------------------------------------------

    async def get(self, task_id: int) -> Task | None:
        """The task with this id in any state, or ``None``."""
        return await self.queue.get_task(task_id)

    async def cancel(self, task_id: int) -> Task:
        """Delete a waiting task and return it; raises ``TaskNotFound`` or
        ``TaskNotWaiting`` (running, dead or done)."""
        return await self.queue.cancel(task_id)

    async def list_tasks(
        self,
        state: TaskState | str | None = None,
        *,
        queue: str | None = None,
        handler: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[Task]:
        """Tasks by state (``ready``, ``scheduled``, ``running``, ``dead``, ``done``),
        queue, handler or a search text, ordered by id, with the total."""
        chosen = TaskState(state) if state is not None else None
        found = TaskFilter(state=chosen, queue=queue, handler=handler, search=search)
        return await self.queue.list_tasks(found, limit=limit, offset=offset)

    # --- dead-letter queue ---------------------------------------------------------------------

    async def list_dead(
        self,
        *,
        queue: str | None = None,
        handler: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[Task]:
        """Dead tasks, most recently dead first, with the total."""
        found = DeadFilter(queue=queue, handler=handler, search=search)
        return await self.queue.list_dead(found, limit=limit, offset=offset)

    async def replay_dead(
        self, task_ids: Iterable[int], *, actor: str = LIBRARY_ACTOR
    ) -> list[int]:
        """Make dead tasks ready again with their attempts reset; returns the ids replayed."""
        return await self.queue.replay_dead(list(task_ids), actor=actor)

    async def delete_dead(self, task_ids: Iterable[int]) -> int:
        """Delete dead tasks; returns how many were deleted."""
        return await self.queue.delete_dead(list(task_ids))

    async def delete_dead_by_key(self, key: str) -> int:
        """Delete the dead tasks of an idempotency key (also those whose key a newer task
        took over); returns how many were deleted."""
        return await self.queue.delete_dead_by_key(key)

    async def dead_stats(self) -> DeadStats:
        """Counts of the dead-letter queue by queue and by handler."""
        return await self.queue.dead_stats()

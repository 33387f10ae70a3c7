"""One scheduler instance as its own process, for the multi-process scheduler tests.

    python -m tests.integration.scheduler_instance <backend> <location> <instance> <status dir>

Opens the database (a SQLite file or a PostgreSQL URL), migrates it, registers the factory
``tick`` (a queue task for handler ``tick``) and runs a :class:`SchedulerService` until
SIGTERM. While it leads, the file ``<status dir>/<instance>.leader`` exists (written within
0.1 s of becoming leader), so a test can tell which process to ``kill -9``.

Also imported by the tests for :func:`open_stack`, which builds the same parts in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler.factories import FactoryRegistry, handler_factory
from scheduler.service import SchedulerService

TICK_FACTORY = "tick"


@dataclass
class Stack:
    db: Any
    queue: Any
    store: Any


@asynccontextmanager
async def open_stack(backend: str, location: Any) -> AsyncIterator[Stack]:
    """A migrated database with a task queue and a schedule store on it."""
    if backend == "sqlite":
        from store.db.sqlite import SqliteDatabase
        from store.queue.sqlite import SqliteTaskQueue
        from store.schedules.sqlite import SqliteScheduleStore

        db: Any = await SqliteDatabase.open(location)
        queue: Any = SqliteTaskQueue(db)
        store: Any = SqliteScheduleStore(db)
    else:
        from store.db.postgres import PostgresDatabase
        from store.queue.postgres import PostgresTaskQueue
        from store.schedules.postgres import PostgresScheduleStore

        db = await PostgresDatabase.open(location)
        queue = PostgresTaskQueue(db)
        store = PostgresScheduleStore(db)
    try:
        await db.migrate()
        yield Stack(db=db, queue=queue, store=store)
    finally:
        await store.close()
        await queue.close()
        await db.close()


def tick_factories() -> FactoryRegistry:
    registry = FactoryRegistry()
    registry.register(handler_factory(TICK_FACTORY))
    return registry


async def main(backend: str, location: str, instance: str, status_dir: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    marker = status_dir / f"{instance}.leader"
    async with (
        open_stack(backend, location) as stack,
        SchedulerService(
            store=stack.store, queue=stack.queue, factories=tick_factories(), instance=instance
        ) as service,
    ):
        print("started", flush=True)
        while not stop.is_set():
            if service.is_leader:
                marker.touch()
            else:
                marker.unlink(missing_ok=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
    marker.unlink(missing_ok=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))

"""Fixtures of the job and run contract tests: ``job_store`` and ``run_store`` on every
backend, on one migrated test database (the ``backend`` and ``queue_location`` fixtures of
``tests/conftest.py`` pick the backend and the fresh database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class JobStores:
    """A job store and a run store sharing one open database object."""

    jobs: Any
    runs: Any
    db: Any


@dataclass
class JobStoreFactory:
    """Opens (and finally closes) job and run stores on this test's database."""

    backend: str
    location: Any
    _open: list[JobStores] = field(default_factory=list)

    async def open(self) -> JobStores:
        """Open the database, migrate it and build both stores on it."""
        if self.backend == "sqlite":
            from store.db.sqlite import SqliteDatabase
            from store.jobs.sqlite import SqliteJobStore, SqliteRunStore

            db: Any = await SqliteDatabase.open(self.location)
            stores = JobStores(jobs=SqliteJobStore(db), runs=SqliteRunStore(db), db=db)
        else:
            from store.db.postgres import PostgresDatabase
            from store.jobs.postgres import PostgresJobStore, PostgresRunStore

            db = await PostgresDatabase.open(self.location)
            stores = JobStores(jobs=PostgresJobStore(db), runs=PostgresRunStore(db), db=db)
        try:
            await db.migrate()
        except BaseException:
            await db.close()
            raise
        self._open.append(stores)
        return stores

    async def close(self, stores: JobStores) -> None:
        """Close the stores' database (e.g. to reopen it)."""
        self._open.remove(stores)
        await stores.db.close()

    async def close_all(self) -> None:
        while self._open:
            await self.close(self._open[-1])


@pytest.fixture
async def job_stores_factory(backend: str, queue_location: Any) -> AsyncIterator[JobStoreFactory]:
    factory = JobStoreFactory(backend=backend, location=queue_location)
    try:
        yield factory
    finally:
        await factory.close_all()


@pytest.fixture
async def job_stores(job_stores_factory: JobStoreFactory) -> JobStores:
    """Both stores on a migrated, empty database of the backend under test."""
    return await job_stores_factory.open()


@pytest.fixture
def job_store(job_stores: JobStores) -> Any:
    """A :class:`store.jobs.protocol.JobStore` on the backend under test."""
    return job_stores.jobs


@pytest.fixture
def run_store(job_stores: JobStores) -> Any:
    """A :class:`store.jobs.protocol.RunStore` on the backend under test (same database as
    ``job_store``)."""
    return job_stores.runs

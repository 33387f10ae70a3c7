"""Shared fixtures: a PostgreSQL server, fresh databases, and task queues on every backend.

The ``queue`` fixture is parametrised over ``sqlite`` and ``postgres`` (test ids end in
``[sqlite]`` / ``[postgres]``, so ``-k sqlite`` or ``-k postgres`` selects one backend), the
pattern of APScheduler's ``tests/conftest.py``. Tests that need PostgreSQL fail, never skip,
when no server can be had: set ``LONGSHORE_TEST_DATABASE_URL`` or let ``scripts/postgres-up``
start a throwaway cluster.

Backends are imported inside the fixtures, so a missing backend module fails only the tests
that use it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

only_postgres = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)], indirect=True
)
"""Run a contract test against PostgreSQL only (e.g. cross-process LISTEN/NOTIFY)."""


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of a PostgreSQL server for tests: ``LONGSHORE_TEST_DATABASE_URL``, else the
    throwaway cluster of ``scripts/postgres-up``. Fails (never skips) when neither works."""
    url = os.environ.get("LONGSHORE_TEST_DATABASE_URL", "").strip()
    if url:
        return url
    script = ROOT / "scripts" / "postgres-up"
    try:
        proc = subprocess.run(
            [str(script)], cwd=ROOT, capture_output=True, text=True, timeout=90, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(
            f"PostgreSQL is needed but LONGSHORE_TEST_DATABASE_URL is unset and {script} "
            f"could not be run: {exc}",
            pytrace=False,
        )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("postgres"):
        pytest.fail(
            "PostgreSQL is needed but LONGSHORE_TEST_DATABASE_URL is unset and "
            f"{script} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout}",
            pytrace=False,
        )
    return lines[-1]


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin_connection(server_url: str) -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(server_url, timeout=10)
    except Exception as exc:  # any failure to reach the server fails the test
        pytest.fail(f"cannot connect to the test PostgreSQL server {server_url}: {exc}")


@pytest.fixture
async def postgres_database_factory(
    postgres_server_url: str,
) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """A factory of fresh, empty databases on the test server; each is dropped (with
    FORCE, so leaked connections cannot block it) when the test ends."""
    created: list[str] = []

    async def create() -> str:
        name = f"longshore_test_{uuid.uuid4().hex[:16]}"
        conn = await _admin_connection(postgres_server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        created.append(name)
        return _with_database(postgres_server_url, name)

    yield create

    if created:
        conn = await _admin_connection(postgres_server_url)
        try:
            for name in created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def postgres_database_url(
    postgres_database_factory: Callable[[], Awaitable[str]],
) -> str:
    """URL of a fresh, empty PostgreSQL database for this test."""
    return await postgres_database_factory()


# --- task queues on every backend -----------------------------------------------------------


@dataclass
class QueueFactory:
    """Opens databases and task queues on one test database (a SQLite file or a
    PostgreSQL database) and closes whatever is still open when the test ends."""

    backend: str
    location: Any  # Path for SQLite, URL for PostgreSQL
    _open: list[tuple[Any, Any]] = field(default_factory=list)

    async def open_database(self, location: Any = None) -> Any:
        """Open (without migrating) the database at ``location`` (default: this test's)."""
        target = self.location if location is None else location
        if self.backend == "sqlite":
            from store.db.sqlite import SqliteDatabase

            return await SqliteDatabase.open(target)
        from store.db.postgres import PostgresDatabase

        return await PostgresDatabase.open(target)

    async def open(self, **kwargs: Any) -> Any:
        """Open the database, migrate it and return a new task queue object on it."""
        db = await self.open_database()
        try:
            await db.migrate()
            if self.backend == "sqlite":
                from store.queue.sqlite import SqliteTaskQueue

                queue = SqliteTaskQueue(db, **kwargs)
            else:
                from store.queue.postgres import PostgresTaskQueue

                queue = PostgresTaskQueue(db, **kwargs)
        except BaseException:
            await db.close()
            raise
        self._open.append((queue, db))
        return queue

    async def close(self, queue: Any) -> None:
        """Close ``queue`` and its database (e.g. to reopen them)."""
        for index, (opened, db) in enumerate(self._open):
            if opened is queue:
                del self._open[index]
                try:
                    await opened.close()
                finally:
                    await db.close()
                return
        raise AssertionError("this queue was not opened by the factory")

    async def close_all(self) -> None:
        errors: list[BaseException] = []
        while self._open:
            queue, _db = self._open[-1]
            try:
                await self.close(queue)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The queue backend under test: ``sqlite`` or ``postgres``."""
    return str(request.param)


@pytest.fixture
def queue_location(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Where this test's (empty) database lives: a SQLite file or a PostgreSQL URL."""
    if backend == "sqlite":
        return tmp_path / "queue.db"
    return request.getfixturevalue("postgres_database_url")


@pytest.fixture
async def queue_factory(backend: str, queue_location: Any) -> AsyncIterator[QueueFactory]:
    factory = QueueFactory(backend=backend, location=queue_location)
    try:
        yield factory
    finally:
        await factory.close_all()


@pytest.fixture
async def queue(queue_factory: QueueFactory) -> Any:
    """A migrated, empty task queue on the backend under test."""
    return await queue_factory.open()


@pytest.fixture
def open_queue(queue: Any, queue_factory: QueueFactory) -> Callable[..., Awaitable[Any]]:
    """Open another queue object (its own database object and connections) on the same
    database as ``queue``, as a second worker process would."""
    return queue_factory.open


@pytest.fixture
def empty_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[], Awaitable[Any]]:
    """A factory of further empty database locations on the backend under test."""
    counter = iter(range(1_000_000))
    if backend == "postgres":
        create_pg = request.getfixturevalue("postgres_database_factory")

        async def create() -> Any:
            return await create_pg()

        return create

    async def create_sqlite() -> Any:
        return tmp_path / f"empty-{next(counter)}.db"

    return create_sqlite

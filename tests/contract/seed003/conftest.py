"""The seed 003 world, built once per backend for the whole suite (see :mod:`.world`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import BACKENDS, _admin_connection, _with_database
from tests.contract.seed003.world import World, seed_world


@pytest_asyncio.fixture(scope="package", loop_scope="package", params=BACKENDS)
async def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    backend = str(request.param)
    directory = tmp_path_factory.mktemp(f"seed003-{backend}")
    location: Any = directory / "queue.db"
    server_url, database = "", ""
    if backend == "postgres":
        server_url = request.getfixturevalue("postgres_server_url")
        database = f"longshore_test_{uuid.uuid4().hex[:16]}"
        conn = await _admin_connection(server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()
        location = _with_database(server_url, database)
    try:
        async with seed_world(backend, location, directory) as built:
            yield built
    finally:
        if database:
            conn = await _admin_connection(server_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            finally:
                await conn.close()

"""Definitions saved before source fields became one JSON object keep their sources: the
migration moves each set column (repo, tag, tarball_url, tarball_path, tarball_sha256) into
``source_fields`` and leaves the unset ones out — on every backend."""

from __future__ import annotations

import importlib

import pytest

from store import sqlfiles

OLD_ROWS = [
    ("from-git", "git_tag", "https://git.example.com/a.git", "v1", None, None, None),
    ("from-url", "tarball_url", None, None, "https://dl.example.com/a.tgz", None, "ab" * 32),
    ("from-path", "tarball_path", None, None, None, "team/a.tgz", None),
]

SQLITE_INSERT = """
INSERT INTO job_definitions (
    name, revision, description, source, repo, tag, tarball_url, tarball_path, tarball_sha256,
    path, dockerfile, command, env, queue, retries, timeout_seconds, memory_mb, cpus,
    pids_limit, network, artifacts_path, output_bytes, on_output_limit, created_at, updated_at
) VALUES (?, 3, '', ?, ?, ?, ?, ?, ?, NULL, 'Dockerfile', '["run"]', '[]', 'default', 0, 600,
          512, 1.0, 256, 'none', '/artifacts', NULL, 'truncate', 1, 2)
"""

POSTGRES_INSERT = """
INSERT INTO job_definitions (
    name, revision, description, source, repo, tag, tarball_url, tarball_path, tarball_sha256,
    dockerfile, command, env, queue, retries, timeout_seconds, memory_mb, cpus, pids_limit,
    network, artifacts_path, on_output_limit
) VALUES ($1, 3, '', $2, $3, $4, $5, $6, $7, 'Dockerfile', '["run"]', '[]', 'default', 0,
          600, 512, 1.0, 256, 'none', '/artifacts', 'truncate')
"""


async def test_each_source_column_moves_into_the_source_fields(
    backend, job_stores_factory, monkeypatch: pytest.MonkeyPatch
):
    every = sqlfiles.migrations(backend)
    moving = next(m.version for m in every if m.name == "job_source_fields")
    database = importlib.import_module(f"store.db.{backend}")
    monkeypatch.setattr(database, "migrations", lambda _backend: every[: moving - 1])
    stores = await job_stores_factory.open()
    if backend == "sqlite":
        await stores.db.write(lambda conn: conn.executemany(SQLITE_INSERT, OLD_ROWS))
    else:
        async with stores.db.connection() as connection:
            await connection.executemany(POSTGRES_INSERT, OLD_ROWS)
    monkeypatch.undo()

    assert await stores.db.migrate() == [m.version for m in every[moving - 1 :]]

    by_name = {job.name: job for job in (await stores.jobs.list_jobs(limit=10, offset=0)).items}
    assert {name: (job.source, job.source_fields) for name, job in by_name.items()} == {
        "from-git": ("git_tag", {"repo": "https://git.example.com/a.git", "tag": "v1"}),
        "from-url": (
            "tarball_url",
            {"tarball_url": "https://dl.example.com/a.tgz", "tarball_sha256": "ab" * 32},
        ),
        "from-path": ("tarball_path", {"tarball_path": "team/a.tgz"}),
    }
    assert all(job.revision == 3 and job.command == ("run",) for job in by_name.values())


async def test_a_source_type_the_database_does_not_know_is_refused(job_store):
    from store.errors import StoreError
    from store.jobs.models import JobDefinition

    with pytest.raises(StoreError):
        await job_store.upsert(JobDefinition(name="svn-job", source="svn", source_fields={}))
    assert await job_store.get("svn-job") is None

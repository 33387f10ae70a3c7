"""What a job's source can reach, end to end through the ``job.run`` handler: the bytes it
names, the build it asks for and the run it gets stay inside the sandbox (docs/security.md).

Real Docker, real loopback servers, the SQLite store; base images are imported locally.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from store.jobs.models import RunStatus
from store.queue.models import TaskState
from tests.integration.test_job_runs import Env, docker_api, make_env

pytestmark = [pytest.mark.docker, pytest.mark.slow]

__all__ = ["docker_api"]  # the module fixture, shared with test_job_runs


@pytest.fixture
async def env(tmp_path: Path, docker_api: Any) -> AsyncIterator[Env]:
    async for value in make_env(tmp_path, docker_api, "sqlite"):
        yield value


async def test_bytes_that_are_not_an_archive_are_never_stored_as_the_source(env: Env) -> None:
    data = b"#!/bin/sh\necho this is no tarball\n" * 20
    (env.tarball_dir / "script.tar.gz").write_bytes(data)
    job = await env.define(source="tarball_path", source_fields={"tarball_path": "script.tar.gz"})
    task_id, [run] = await env.run_job(job.name)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "UnsafeArchive" in run.error
    assert run.source_sha256 is None
    assert not env.artifacts.exists(hashlib.sha256(data).hexdigest())
    task = await env.queue.get_task(task_id)
    assert task.state is TaskState.DEAD

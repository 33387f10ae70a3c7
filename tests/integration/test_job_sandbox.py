"""What a job's source can reach, end to end through the ``job.run`` handler: the bytes it
names, the build it asks for and the run it gets stay inside the sandbox (docs/security.md).

Real Docker, real loopback servers, the SQLite store; base images are imported locally.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobrunner.engine import ArtifactLimits
from jobrunner.runner import JobRunner
from store.jobs.models import RunStatus
from store.queue.models import TaskState
from tests.integration.test_job_runs import Env, docker_api, job_files, make_env, tarball

MIB = 1024 * 1024

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


def job_tarball(env: Env, script: str) -> str:
    name = f"sbx-{uuid.uuid4().hex[:10]}"
    (env.tarball_dir / f"{name}.tar.gz").write_bytes(tarball(job_files(script)))
    return name


async def test_jobs_run_as_an_unprivileged_user_unless_they_name_one(env: Env) -> None:
    # The image's files stay readable: the job reads its own script as that user.
    script = "id -u; id -g; cat /etc/hostname > /dev/null && echo readable\n"
    name = job_tarball(env, script)
    default = await env.define(
        source="tarball_path", source_fields={"tarball_path": f"{name}.tar.gz"}
    )
    _, [run] = await env.run_job(default.name)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert env.output(run) == b"65534\n65534\nreadable\n"
    assert run.user == "65534:65534"
    as_root = await env.define(
        source="tarball_path", source_fields={"tarball_path": f"{name}.tar.gz"}, user="0"
    )
    _, [run] = await env.run_job(as_root.name)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert env.output(run) == b"0\n0\nreadable\n"
    assert run.user == "0"  # recorded on the run


async def test_a_job_cannot_write_more_than_the_artifacts_cap(env: Env) -> None:
    config = dataclasses.replace(
        env.config, artifact_limits=ArtifactLimits(max_file_bytes=MIB, max_total_bytes=MIB)
    )
    runner = JobRunner(
        queue=env.queue,
        jobs=env.jobs,
        runs=env.runs,
        engine=env.engine,
        artifacts=env.artifacts,
        config=config,
        default_queue=f"jobs-{env.tag_prefix}",
        events=env.events,
    )
    capped = dataclasses.replace(env, runner=runner, config=config)
    name = job_tarball(env, "head -c 3000000 /dev/zero > /artifacts/big.bin || echo write failed\n")
    job = await capped.define(
        source="tarball_path", source_fields={"tarball_path": f"{name}.tar.gz"}
    )
    _, [run] = await capped.run_job(job.name)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert b"write failed" in capped.output(run)
    [artifact] = run.artifacts
    assert artifact.size_bytes <= MIB

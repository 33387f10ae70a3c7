"""Run retention of real runs: the output and artifacts a run made through Docker are freed
from the artifact store when retention deletes the run, and the kept run's stay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobrunner.run_retention import RetentionRule, RunPruner, RunRetention
from tests.integration.docker_images import docker_client, ensure_busybox_image
from tests.integration.test_job_runs import Env, job_files, make_env, tarball

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SCRIPT = (
    "mkdir -p /artifacts\n"
    "cat /proc/sys/kernel/random/uuid > /artifacts/id.txt\n"
    "head -c 20000 /dev/urandom > /artifacts/noise.bin\n"
    "cat /artifacts/id.txt\n"
)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    api = docker_client()
    ensure_busybox_image(api)
    async for value in make_env(tmp_path, api, "sqlite"):
        yield value


def disk_usage(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def blobs(run: Any) -> set[str]:
    return {run.output_sha256, *(artifact.sha256 for artifact in run.artifacts)}


async def test_the_artifacts_of_a_real_run_are_freed_when_it_is_pruned(env: Env) -> None:
    (env.tarball_dir / "retained.tar.gz").write_bytes(tarball(job_files(SCRIPT)))
    job = await env.define(source="tarball_path", source_fields={"tarball_path": "retained.tar.gz"})
    made = []
    for _ in range(3):
        _, [run] = await env.run_job(job.name)
        assert run.status.value == "succeeded", run.error
        assert len(run.artifacts) == 2
        made.append(run)
    old, kept = made[:2], made[2]
    freed_expected = sum(env.artifacts.size(d) for run in old for d in blobs(run))
    before = disk_usage(env.artifacts.root)
    retention = RunRetention(default=RetentionRule(keep_last=1, keep_for=timedelta(0)))
    pruner = RunPruner(
        runs=env.runs, artifacts=env.artifacts, retention=retention, clock_margin=timedelta(0)
    )

    report = await pruner.prune()

    assert report.runs_deleted == 2
    assert report.bytes_freed == freed_expected > 40_000
    assert before - disk_usage(env.artifacts.root) == freed_expected
    assert all(not env.artifacts.exists(d) for run in old for d in blobs(run))
    assert all(env.artifacts.exists(d) for d in blobs(kept) | {kept.source_sha256})
    assert [
        r.run_id for r in (await env.runs.list_runs(job=job.name, limit=9, offset=0)).items
    ] == [kept.run_id]

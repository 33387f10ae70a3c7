"""Run retention and crash leftovers on every backend, with a real artifact store: a job run
50 times keeps its newest runs, their blobs and its newest failure, and the disk space of the
others comes back; unfinished runs and live work are never touched."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobrunner.leftovers import remove_leftovers
from jobrunner.run_retention import RetentionRule, RunPruner, RunRetention
from store.artifacts import ArtifactStore
from store.jobs.models import NewRun, RunArtifact, RunStatus
from tests.contract.conftest import JobStoreFactory

KEEP_10 = RunRetention(default=RetentionRule(keep_last=10, keep_for=timedelta(0)))


@pytest.fixture
async def run_store(backend: str, queue_location: Any) -> AsyncIterator[Any]:
    factory = JobStoreFactory(backend=backend, location=queue_location)
    try:
        yield (await factory.open()).runs
    finally:
        await factory.close_all()


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def age_all(artifacts: ArtifactStore, seconds: float = 3600) -> None:
    """Make every stored blob look written ``seconds`` ago (by runs of the past)."""
    then = time.time() - seconds
    for path in (artifacts.root / "sha256").rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def disk_usage(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


async def finished_run(runs: Any, artifacts: ArtifactStore, job: str, n: int, status: RunStatus):
    """A run that stored a shared source, its own output and an artifact, and ended."""
    run = await runs.create(NewRun(job=job))
    await runs.transition(run.run_id, RunStatus.FETCHING)
    source = artifacts.put_chunks([b"the same source tarball" * 100])
    output = artifacts.put_chunks([f"output of run {n}\n".encode() * 500])
    artifact = artifacts.put_chunks([f"report {n}".encode() * 300])
    return await runs.transition(
        run.run_id,
        status,
        source_sha256=source.sha256,
        output_sha256=output.sha256,
        artifacts=[RunArtifact(name="report", size_bytes=artifact.size, sha256=artifact.sha256)],
    )


def blobs_of(run: Any) -> set[str]:
    return {run.source_sha256, run.output_sha256, *(a.sha256 for a in run.artifacts)}


async def test_a_job_run_50_times_keeps_its_10_newest_and_newest_failure(run_store, artifacts):
    made = []
    for n in range(50):
        if n == 3:
            made.append(await run_store.create(NewRun(job="nightly")))  # still queued
            continue
        status = RunStatus.FAILED if n == 20 else RunStatus.SUCCEEDED
        made.append(await finished_run(run_store, artifacts, "nightly", n, status))
    age_all(artifacts)
    before = disk_usage(artifacts.root)
    expected_gone = [run for n, run in enumerate(made[:40]) if n not in (3, 20)]
    freed_expected = sum(
        artifacts.size(run.output_sha256) + artifacts.size(run.artifacts[0].sha256)
        for run in expected_gone
    )

    report = await RunPruner(runs=run_store, artifacts=artifacts, retention=KEEP_10).prune()

    left = (await run_store.list_runs(job="nightly", limit=100, offset=0)).items
    assert {run.run_id for run in left} == {run.run_id for run in [*made[40:], made[3], made[20]]}
    assert report.runs_deleted == len(expected_gone) == 38
    for run in left:
        if run.status.is_final:
            assert all(artifacts.exists(digest) for digest in blobs_of(run))
    for run in expected_gone:
        assert not artifacts.exists(run.output_sha256)
        assert not artifacts.exists(run.artifacts[0].sha256)
    assert report.bytes_freed == freed_expected
    assert before - disk_usage(artifacts.root) == freed_expected
    assert (
        await RunPruner(runs=run_store, artifacts=artifacts, retention=KEEP_10).prune()
    ).runs_deleted == 0


async def test_a_dry_run_counts_and_deletes_nothing(run_store, artifacts):
    for n in range(15):
        await finished_run(run_store, artifacts, "a", n, RunStatus.SUCCEEDED)
    before = disk_usage(artifacts.root)
    pruner = RunPruner(runs=run_store, artifacts=artifacts, retention=KEEP_10)

    report = await pruner.prune(dry_run=True)

    assert (report.runs_deleted, report.by_job) == (5, {"a": 5})
    assert (await run_store.list_runs(job="a", limit=100, offset=0)).total == 15
    assert disk_usage(artifacts.root) == before


async def test_a_job_with_its_own_rule_keeps_what_it_says(run_store, artifacts):
    for n in range(12):
        await finished_run(run_store, artifacts, "keep-3", n, RunStatus.SUCCEEDED)
        await finished_run(run_store, artifacts, "default", n, RunStatus.SUCCEEDED)
    retention = RunRetention(
        default=RetentionRule(keep_last=10, keep_for=timedelta(0)),
        jobs={"keep-3": RetentionRule(keep_last=3, keep_for=timedelta(0))},
    )

    report = await RunPruner(runs=run_store, artifacts=artifacts, retention=retention).prune()

    assert report.by_job == {"keep-3": 9, "default": 2}


async def test_blobs_a_run_under_way_may_have_stored_are_freed_only_after_it(run_store, artifacts):
    runs = [await finished_run(run_store, artifacts, "a", n, RunStatus.SUCCEEDED) for n in (0, 1)]
    under_way = await run_store.create(NewRun(job="b"))
    await run_store.transition(under_way.run_id, RunStatus.RUNNING)
    age_all(artifacts, 60)  # stored well before the run under way started
    late = await finished_run(run_store, artifacts, "a", 2, RunStatus.SUCCEEDED)
    rule = RunRetention(default=RetentionRule(keep_last=1, keep_for=timedelta(0)))
    pruner = RunPruner(
        runs=run_store, artifacts=artifacts, retention=rule, clock_margin=timedelta(0)
    )
    await finished_run(run_store, artifacts, "a", 3, RunStatus.SUCCEEDED)

    await pruner.prune()
    # runs 0, 1 are old: freed; run 2 stored its blobs after b started: spared for now.
    assert not artifacts.exists(runs[0].output_sha256)
    assert artifacts.exists(late.output_sha256)

    await run_store.transition(under_way.run_id, RunStatus.SUCCEEDED)
    await pruner.prune()
    assert not artifacts.exists(late.output_sha256)


async def test_the_sweep_frees_blobs_no_run_references(run_store, artifacts):
    run = await finished_run(run_store, artifacts, "a", 0, RunStatus.SUCCEEDED)
    stray = artifacts.put_chunks([b"stored by a run that was never recorded"])
    age_all(artifacts)
    pruner = RunPruner(runs=run_store, artifacts=artifacts, retention=KEEP_10)

    blobs, size = await pruner.sweep_blobs()

    assert (blobs, size) == (1, stray.size)
    assert all(artifacts.exists(digest) for digest in blobs_of(run))
    assert not artifacts.exists(stray.sha256)


async def test_crash_leftovers_go_and_a_live_runs_directory_stays(run_store, artifacts, tmp_path):
    work = tmp_path / "work"
    live = await run_store.create(NewRun(job="a"))
    await run_store.transition(live.run_id, RunStatus.RUNNING)
    ended = await run_store.create(NewRun(job="a"))
    await run_store.transition(ended.run_id, RunStatus.FAILED)
    for run_id in (live.run_id, ended.run_id, "f" * 32):
        (work / "runs" / run_id).mkdir(parents=True)
        (work / "runs" / run_id / ".copy-0123456789abcdef.part").write_bytes(b"x" * 4096)
    crashed_blob = artifacts.root / "tmp" / "blob-abc123"
    crashed_blob.write_bytes(b"y" * 1000)
    os.utime(crashed_blob, (time.time() - 3600, time.time() - 3600))

    report = await remove_leftovers(
        work_dir=work, cache_dir=work / "tarball-cache", artifacts=artifacts, runs=run_store
    )

    assert [p.name for p in (work / "runs").iterdir()] == [live.run_id]
    assert not crashed_blob.exists()
    assert (report.run_dirs, report.temporary_files, report.bytes_freed) == (2, 1, 2 * 4096 + 1000)

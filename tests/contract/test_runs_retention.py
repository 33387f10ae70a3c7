"""Retention of runs: which runs a policy lets go (never an unfinished one, never the newest
success and failure), deleting them, and which blobs runs still reference — on every
backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from store.jobs.errors import InvalidJobRecord
from store.jobs.models import DELETE_RUNS_MAX, NewRun, RunArtifact, RunStatus

NOW = timedelta(0)
HOUR = timedelta(hours=1)


def digest(n: int) -> str:
    return f"{n:064x}"


async def make_runs(run_store, job, statuses):
    """Create runs of ``job`` in order, each moved to its status (``None``: left queued)."""
    made = []
    for status in statuses:
        run = await run_store.create(NewRun(job=job))
        if status is not None:
            run = await run_store.transition(run.run_id, status)
        made.append(run)
    return made


def ids(runs):
    return [run.run_id for run in runs]


async def test_only_runs_past_the_newest_n_may_go_oldest_first(run_store):
    runs = await make_runs(run_store, "a", [RunStatus.SUCCEEDED] * 15)
    await make_runs(run_store, "b", [RunStatus.SUCCEEDED] * 3)

    prunable = await run_store.prunable_runs("a", keep_last=10, keep_for=NOW, limit=100)
    of_b = await run_store.prunable_runs("b", keep_last=1, keep_for=NOW, limit=100)

    assert prunable == ids(runs[:5])
    assert len(of_b) == 2


async def test_the_newest_failure_and_success_are_kept_beyond_n(run_store):
    runs = await make_runs(
        run_store,
        "a",
        [RunStatus.SUCCEEDED, RunStatus.TIMED_OUT, RunStatus.FAILED, RunStatus.CANCELLED]
        + [RunStatus.CANCELLED] * 3,
    )

    prunable = await run_store.prunable_runs("a", keep_last=2, keep_for=NOW, limit=100)

    # runs[0] is the newest success and runs[2] the newest failure: both stay.
    assert prunable == ids([runs[1], runs[3], runs[4]])


async def test_an_unfinished_run_never_goes(run_store):
    runs = await make_runs(
        run_store, "a", [None, RunStatus.RUNNING, RunStatus.BUILDING] + [RunStatus.SUCCEEDED] * 3
    )

    prunable = await run_store.prunable_runs("a", keep_last=1, keep_for=NOW, limit=100)
    deleted = await run_store.delete_runs(ids(runs[:3]))

    assert prunable == ids(runs[3:5])
    assert deleted.run_ids == ()
    assert len(await run_store.active_runs("a")) == 3


async def test_runs_younger_than_keep_for_stay(run_store):
    await make_runs(run_store, "a", [RunStatus.SUCCEEDED] * 5)

    young = await run_store.prunable_runs("a", keep_last=1, keep_for=HOUR, limit=100)
    any_age = await run_store.prunable_runs("a", keep_last=1, keep_for=NOW, limit=100)

    assert young == []
    assert len(any_age) == 4  # all but the newest (also the newest success)


async def test_prunable_runs_page_with_limit_and_offset(run_store):
    runs = await make_runs(run_store, "a", [RunStatus.CANCELLED] * 8)

    first = await run_store.prunable_runs("a", keep_last=1, keep_for=NOW, limit=3)
    rest = await run_store.prunable_runs("a", keep_last=1, keep_for=NOW, limit=10, offset=3)

    assert first + rest == ids(runs[:7])


async def test_deleting_runs_returns_the_blobs_they_referenced(run_store):
    runs = await make_runs(run_store, "a", [RunStatus.RUNNING] * 3)
    shared, own = digest(1), digest(2)
    await run_store.transition(
        runs[0].run_id,
        RunStatus.SUCCEEDED,
        source_sha256=shared,
        output_sha256=own,
        artifacts=[RunArtifact(name="x", size_bytes=1, sha256=digest(3))],
    )
    await run_store.set_artifacts(
        runs[1].run_id, [RunArtifact(name="y", size_bytes=1, sha256=digest(4))]
    )
    await run_store.transition(runs[1].run_id, RunStatus.FAILED, source_sha256=shared)
    await run_store.transition(runs[2].run_id, RunStatus.SUCCEEDED, output_sha256=digest(5))

    deleted = await run_store.delete_runs([runs[0].run_id, "no-such-run"])
    still = await run_store.referenced_blobs([digest(n) for n in range(1, 7)])

    assert deleted.run_ids == (runs[0].run_id,)
    assert deleted.blobs == {shared, own, digest(3)}
    assert still == {shared, digest(4), digest(5)}
    assert await run_store.get(runs[0].run_id) is None
    assert (await run_store.list_runs(job="a", limit=10, offset=0)).total == 2


async def test_a_run_references_only_its_current_blobs(run_store):
    (run,) = await make_runs(run_store, "a", [RunStatus.RUNNING])
    await run_store.set_artifacts(
        run.run_id, [RunArtifact(name="x", size_bytes=1, sha256=digest(1))]
    )
    await run_store.set_artifacts(
        run.run_id, [RunArtifact(name="x", size_bytes=1, sha256=digest(2))]
    )

    assert await run_store.referenced_blobs([digest(1), digest(2)]) == {digest(2)}


async def test_jobs_with_runs_lists_each_job_once_by_name(run_store):
    await make_runs(run_store, "zeta", [None, None])
    await make_runs(run_store, "alpha", [RunStatus.SUCCEEDED])
    await make_runs(run_store, "mid", [None])

    assert await run_store.jobs_with_runs() == ["alpha", "mid", "zeta"]


async def test_retention_arguments_are_checked(run_store):
    with pytest.raises(InvalidJobRecord):
        await run_store.prunable_runs("a", keep_last=0, keep_for=NOW, limit=1)
    with pytest.raises(InvalidJobRecord):
        await run_store.prunable_runs("a", keep_last=1, keep_for=-HOUR, limit=1)
    with pytest.raises(InvalidJobRecord):
        await run_store.delete_runs(["x"] * (DELETE_RUNS_MAX + 1))
    assert (await run_store.delete_runs([])).run_ids == ()

"""Finding runs: by job and status newest first with paging, the latest of a job, the ones
still active, the ones of a queue task; artifacts; and runs kept across restarts — on every
backend."""

from __future__ import annotations

import pytest

from store.jobs.errors import IllegalTransition, InvalidJobRecord
from store.jobs.models import NewRun, RunArtifact, RunStatus


async def make_runs(run_store, plan):
    """Create runs in order from ``(job, final status or None)`` pairs; return them."""
    made = []
    for job, status in plan:
        run = await run_store.create(NewRun(job=job))
        if status is not None:
            run = await run_store.transition(run.run_id, status)
        made.append(run)
    return made


def ids(runs):
    return [run.run_id for run in runs]


async def test_runs_are_listed_newest_first_with_paging(run_store):
    runs = await make_runs(run_store, [("a", None)] * 5)
    newest_first = ids(reversed(runs))

    first = await run_store.list_runs(limit=2, offset=0)
    second = await run_store.list_runs(limit=2, offset=2)
    last = await run_store.list_runs(limit=2, offset=4)
    beyond = await run_store.list_runs(limit=2, offset=5)

    assert ids(first.items) + ids(second.items) + ids(last.items) == newest_first
    assert beyond.items == []
    assert {p.total for p in (first, second, last, beyond)} == {5}
    assert (second.limit, second.offset) == (2, 2)


async def test_runs_are_filtered_by_job_and_status(run_store):
    runs = await make_runs(
        run_store,
        [
            ("a", RunStatus.SUCCEEDED),
            ("b", RunStatus.FAILED),
            ("a", RunStatus.FAILED),
            ("a", None),
            ("b", RunStatus.RUNNING),
            ("a", RunStatus.FAILED),
        ],
    )

    by_job = await run_store.list_runs(job="a", limit=10, offset=0)
    by_status = await run_store.list_runs(status=RunStatus.FAILED, limit=10, offset=0)
    by_both = await run_store.list_runs(job="a", status=RunStatus.FAILED, limit=1, offset=0)
    nothing = await run_store.list_runs(job="zzz", limit=10, offset=0)

    assert ids(by_job.items) == ids([runs[5], runs[3], runs[2], runs[0]])
    assert by_job.total == 4
    assert ids(by_status.items) == ids([runs[5], runs[2], runs[1]])
    assert ids(by_both.items) == ids([runs[5]])
    assert by_both.total == 2
    assert nothing.items == []
    assert nothing.total == 0


async def test_a_negative_page_bound_is_refused(run_store):
    with pytest.raises(InvalidJobRecord):
        await run_store.list_runs(limit=-1, offset=0)


async def test_the_latest_run_of_a_job_is_the_last_created(run_store):
    runs = await make_runs(run_store, [("a", RunStatus.FAILED), ("a", None), ("b", None)])

    latest = await run_store.latest_for_job("a")

    assert latest.run_id == runs[1].run_id
    assert await run_store.latest_for_job("nope") is None


async def test_active_runs_are_those_not_yet_final_oldest_first(run_store):
    runs = await make_runs(
        run_store,
        [
            ("a", RunStatus.RUNNING),
            ("a", RunStatus.SUCCEEDED),
            ("b", RunStatus.FETCHING),
            ("a", None),
            ("a", RunStatus.CANCELLED),
            ("b", RunStatus.TIMED_OUT),
        ],
    )

    assert ids(await run_store.active_runs("a")) == ids([runs[0], runs[3]])
    assert ids(await run_store.active_runs()) == ids([runs[0], runs[2], runs[3]])
    assert await run_store.active_runs("nope") == []


async def test_runs_of_a_task_come_one_per_attempt_in_order(run_store):
    first = await run_store.create(NewRun(job="a", task_id=11, attempt=1))
    await run_store.create(NewRun(job="a", task_id=12))
    second = await run_store.create(NewRun(job="a", task_id=11, attempt=2))
    await run_store.create(NewRun(job="a"))

    found = await run_store.find_by_task(11)

    assert ids(found) == [first.run_id, second.run_id]
    assert [run.attempt for run in found] == [1, 2]
    assert await run_store.find_by_task(999) == []


ARTIFACTS = [
    RunArtifact(name="out/report.csv", size_bytes=2048, sha256="0F" * 32),
    RunArtifact(name="ünïcode name.txt", size_bytes=0, sha256="e3" * 32),
]


async def test_artifacts_round_trip(run_store):
    run = await run_store.create(NewRun(job="a"))
    await run_store.transition(run.run_id, RunStatus.RUNNING)

    updated = await run_store.set_artifacts(run.run_id, ARTIFACTS)

    expected = (
        RunArtifact(name="out/report.csv", size_bytes=2048, sha256="0f" * 32),
        RunArtifact(name="ünïcode name.txt", size_bytes=0, sha256="e3" * 32),
    )
    assert updated.artifacts == expected
    assert updated.status is RunStatus.RUNNING
    assert (await run_store.get(run.run_id)).artifacts == expected
    assert updated.artifact("out/report.csv") == expected[0]
    assert updated.artifact("missing") is None
    # Setting them again replaces the list.
    replaced = await run_store.set_artifacts(run.run_id, ARTIFACTS[:1])
    assert replaced.artifacts == expected[:1]
    assert (await run_store.set_artifacts(run.run_id, [])).artifacts == ()


async def test_artifacts_of_a_finished_run_cannot_change(run_store):
    run = await run_store.create(NewRun(job="a"))
    done = await run_store.transition(run.run_id, RunStatus.SUCCEEDED, artifacts=ARTIFACTS)

    with pytest.raises(IllegalTransition, match="finished"):
        await run_store.set_artifacts(run.run_id, [])

    assert await run_store.get(run.run_id) == done


@pytest.mark.parametrize(
    "artifacts",
    [
        [ARTIFACTS[0], ARTIFACTS[0]],
        [RunArtifact(name="", size_bytes=1, sha256="00" * 32)],
        [RunArtifact(name="x", size_bytes=-1, sha256="00" * 32)],
        [RunArtifact(name="x", size_bytes=1, sha256="00" * 31)],
        [RunArtifact(name="x", size_bytes=1, sha256="zz" * 32)],
        [{"name": "x", "size_bytes": 1, "sha256": "00" * 32}],
    ],
    ids=["duplicate", "no-name", "negative-size", "short-sha", "not-hex", "not-an-artifact"],
)
async def test_malformed_artifacts_are_refused(run_store, artifacts):
    run = await run_store.create(NewRun(job="a"))

    with pytest.raises(InvalidJobRecord):
        await run_store.set_artifacts(run.run_id, artifacts)
    with pytest.raises(InvalidJobRecord):
        await run_store.transition(run.run_id, RunStatus.SUCCEEDED, artifacts=artifacts)

    assert await run_store.get(run.run_id) == run


async def test_runs_survive_closing_and_reopening_the_database(job_stores_factory):
    stores = await job_stores_factory.open()
    run = await stores.runs.create(NewRun(job="a", task_id=5))
    await stores.runs.transition(run.run_id, RunStatus.BUILDING, commit_sha="f" * 40)
    done = await stores.runs.transition(
        run.run_id,
        RunStatus.FAILED,
        exit_code=2,
        error="exit status 2",
        output_bytes=10,
        output_truncated=True,
        artifacts=ARTIFACTS,
        build_log="built",
    )
    await job_stores_factory.close(stores)

    reopened = await job_stores_factory.open()

    assert await reopened.runs.get(run.run_id) == done
    assert ids((await reopened.runs.list_runs(job="a", limit=5, offset=0)).items) == [run.run_id]
    # New runs still sort after the old ones.
    newer = await reopened.runs.create(NewRun(job="a"))
    assert (await reopened.runs.latest_for_job("a")).run_id == newer.run_id

"""A run's life in the store: recorded queued, moved forwards through its stages with each
stage's time stamped, finished once and never changed again — on every backend."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest

from store.jobs.errors import IllegalTransition, InvalidJobRecord, RunAlreadyExists, RunNotFound
from store.jobs.models import (
    BUILD_LOG_MAX_CHARS,
    ERROR_MAX_CHARS,
    NewRun,
    RunArtifact,
    RunStatus,
    RunTrigger,
)

CLOCK_SLACK = timedelta(seconds=2)
FINAL = [s for s in RunStatus if s.is_final]


def near_now(moment: datetime | None) -> None:
    assert moment is not None
    assert moment.tzinfo is not None, "timestamps must be timezone-aware"
    assert abs(moment - datetime.now(UTC)) <= CLOCK_SLACK


async def test_a_new_run_is_queued_with_a_fresh_id(run_store):
    run = await run_store.create(
        NewRun(
            job="nightly",
            task_id=42,
            attempt=2,
            trigger=RunTrigger.SCHEDULE,
            actor="scheduler",
            schedule_name="every-night",
        )
    )

    assert re.fullmatch(r"[0-9a-f]{32}", run.run_id)
    assert run.status is RunStatus.QUEUED
    assert (run.job, run.task_id, run.attempt) == ("nightly", 42, 2)
    assert run.trigger is RunTrigger.SCHEDULE
    assert (run.actor, run.schedule_name) == ("scheduler", "every-night")
    near_now(run.queued_at)
    assert run.fetching_at is run.building_at is run.running_at is run.finished_at is None
    assert run.cancel_requested_at is None
    assert (run.exit_code, run.error, run.commit_sha, run.source_sha256, run.image_id) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert (run.output_bytes, run.output_truncated, run.artifacts, run.build_log) == (
        0,
        False,
        (),
        "",
    )
    assert await run_store.get(run.run_id) == run


async def test_two_runs_never_share_an_id(run_store):
    runs = [await run_store.create(NewRun(job="nightly")) for _ in range(20)]
    assert len({run.run_id for run in runs}) == 20


async def test_a_caller_may_choose_the_run_id_but_only_once(run_store):
    run = await run_store.create(NewRun(job="nightly", run_id="run-abc_123"))
    assert run.run_id == "run-abc_123"

    with pytest.raises(RunAlreadyExists):
        await run_store.create(NewRun(job="other", run_id="run-abc_123"))
    assert (await run_store.get("run-abc_123")).job == "nightly"


@pytest.mark.parametrize(
    "new_run",
    [
        NewRun(job="Not A Job"),
        NewRun(job="nightly", attempt=0),
        NewRun(job="nightly", run_id="has space"),
        NewRun(job="nightly", run_id="x" * 65),
    ],
    ids=["job-name", "attempt", "id-chars", "id-length"],
)
async def test_a_run_the_store_cannot_keep_is_refused(run_store, new_run):
    with pytest.raises(InvalidJobRecord):
        await run_store.create(new_run)
    assert (await run_store.list_runs(limit=10, offset=0)).total == 0


async def test_get_of_an_unknown_run_is_none(run_store):
    assert await run_store.get("0" * 32) is None


async def test_a_run_goes_through_every_stage_with_its_time_stamped(run_store):
    run = await run_store.create(NewRun(job="nightly", task_id=7))

    fetching = await run_store.transition(run.run_id, RunStatus.FETCHING)
    building = await run_store.transition(
        run.run_id, RunStatus.BUILDING, commit_sha="c0ffee" * 6 + "abcd"
    )
    running = await run_store.transition(
        run.run_id,
        RunStatus.RUNNING,
        image_id="sha256:" + "1" * 64,
        build_log="Step 1/2\n",
        user="65534:65534",
    )
    done = await run_store.transition(
        run.run_id, RunStatus.SUCCEEDED, exit_code=0, output_bytes=1234, output_truncated=False
    )

    assert [r.status for r in (fetching, building, running, done)] == [
        RunStatus.FETCHING,
        RunStatus.BUILDING,
        RunStatus.RUNNING,
        RunStatus.SUCCEEDED,
    ]
    assert run.queued_at <= done.fetching_at <= done.building_at <= done.running_at
    assert done.running_at <= done.finished_at
    near_now(done.finished_at)
    # Each stage's time is set once, when the run enters it.
    assert done.fetching_at == fetching.fetching_at
    assert done.building_at == building.building_at
    assert fetching.building_at is None
    assert fetching.finished_at is None
    # Fields set along the way are kept by later transitions.
    assert done.commit_sha == "c0ffee" * 6 + "abcd"
    assert done.image_id == "sha256:" + "1" * 64
    assert done.build_log == "Step 1/2\n"
    assert building.user is None
    assert done.user == "65534:65534"
    assert (done.exit_code, done.output_bytes, done.output_truncated) == (0, 1234, False)
    assert done.queued_at == run.queued_at
    assert await run_store.get(run.run_id) == done


async def test_stages_may_be_skipped_and_stay_unstamped(run_store):
    run = await run_store.create(NewRun(job="nightly"))

    await run_store.transition(run.run_id, RunStatus.FETCHING, source_sha256="ab" * 32)
    running = await run_store.transition(run.run_id, RunStatus.RUNNING)

    assert running.building_at is None
    assert running.running_at is not None
    assert running.source_sha256 == "ab" * 32


async def test_a_queued_run_can_be_cancelled_or_failed_at_once(run_store):
    cancelled = await run_store.create(NewRun(job="nightly"))
    failed = await run_store.create(NewRun(job="nightly"))

    c = await run_store.transition(cancelled.run_id, RunStatus.CANCELLED)
    f = await run_store.transition(failed.run_id, RunStatus.FAILED, error="definition invalid")

    assert c.status is RunStatus.CANCELLED
    assert c.finished_at is not None
    assert c.fetching_at is None
    assert f.error == "definition invalid"


@pytest.mark.parametrize("final", FINAL, ids=[s.value for s in FINAL])
async def test_a_finished_run_never_changes_again(run_store, final):
    run = await run_store.create(NewRun(job="nightly"))
    await run_store.transition(run.run_id, RunStatus.RUNNING)
    ended = await run_store.transition(run.run_id, final, exit_code=3)

    for target in RunStatus:
        with pytest.raises(IllegalTransition, match="finished") as caught:
            await run_store.transition(run.run_id, target, exit_code=99, error="late")
        assert caught.value.current is final
        assert caught.value.target is target

    assert await run_store.get(run.run_id) == ended


@pytest.mark.parametrize(
    ("reached", "target"),
    [
        (RunStatus.FETCHING, RunStatus.QUEUED),
        (RunStatus.BUILDING, RunStatus.FETCHING),
        (RunStatus.RUNNING, RunStatus.BUILDING),
        (RunStatus.RUNNING, RunStatus.QUEUED),
        (RunStatus.RUNNING, RunStatus.RUNNING),
        (RunStatus.QUEUED, RunStatus.QUEUED),
    ],
    ids=lambda s: s.value,
)
async def test_a_run_never_goes_back_or_re_enters_a_stage(run_store, reached, target):
    run = await run_store.create(NewRun(job="nightly"))
    if reached is not RunStatus.QUEUED:
        run = await run_store.transition(run.run_id, reached)

    with pytest.raises(IllegalTransition):
        await run_store.transition(run.run_id, target, error="nope")

    assert await run_store.get(run.run_id) == run


async def test_transitions_of_an_unknown_run_say_so(run_store):
    with pytest.raises(RunNotFound):
        await run_store.transition("0" * 32, RunStatus.RUNNING)
    with pytest.raises(RunNotFound):
        await run_store.set_artifacts("0" * 32, [])
    with pytest.raises(RunNotFound):
        await run_store.request_cancel("0" * 32)


async def test_of_racing_final_transitions_exactly_one_wins(run_store):
    run = await run_store.create(NewRun(job="nightly"))
    await run_store.transition(run.run_id, RunStatus.RUNNING)

    results = await asyncio.gather(
        run_store.transition(run.run_id, RunStatus.SUCCEEDED, exit_code=0),
        run_store.transition(run.run_id, RunStatus.TIMED_OUT, error="deadline"),
        run_store.transition(run.run_id, RunStatus.CANCELLED),
        return_exceptions=True,
    )

    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(exc, IllegalTransition) for exc in losers)
    assert await run_store.get(run.run_id) == winners[0]


async def test_the_build_log_keeps_its_tail_within_the_bound(run_store):
    run = await run_store.create(NewRun(job="nightly"))
    log = "".join(f"line {i}\n" for i in range(20_000)) + "ERROR: the build failed\n"

    failed = await run_store.transition(run.run_id, RunStatus.FAILED, build_log=log)

    assert len(failed.build_log) <= BUILD_LOG_MAX_CHARS
    assert failed.build_log.endswith("ERROR: the build failed\n")
    assert "characters omitted" in failed.build_log


async def test_the_error_keeps_its_head_within_the_bound(run_store):
    run = await run_store.create(NewRun(job="nightly"))

    failed = await run_store.transition(
        run.run_id, RunStatus.FAILED, error="checksum mismatch: " + "x" * (ERROR_MAX_CHARS * 2)
    )

    assert len(failed.error) <= ERROR_MAX_CHARS
    assert failed.error.startswith("checksum mismatch: ")


async def test_output_with_nul_characters_is_stored_alike_on_every_backend(run_store):
    run = await run_store.create(NewRun(job="nightly"))

    failed = await run_store.transition(run.run_id, RunStatus.FAILED, build_log="a\0b", error="\0")

    assert failed.build_log == "a\ufffdb"
    assert failed.error == "\ufffd"


@pytest.mark.parametrize(
    "fields",
    [
        {"exit_code": "0"},
        {"output_bytes": -1},
        {"output_truncated": 1},
        {"error": 5},
        {"commit_sha": "x" * 300},
        {"colour": "blue"},
    ],
    ids=["exit-code", "output-bytes", "truncated", "error", "commit-sha", "unknown"],
)
async def test_bad_fields_are_refused_before_anything_is_written(run_store, fields):
    run = await run_store.create(NewRun(job="nightly"))

    with pytest.raises(InvalidJobRecord):
        await run_store.transition(run.run_id, RunStatus.RUNNING, **fields)

    assert await run_store.get(run.run_id) == run


async def test_a_cancel_request_is_recorded_once_and_leaves_the_status_to_the_worker(run_store):
    run = await run_store.create(NewRun(job="nightly"))
    await run_store.transition(run.run_id, RunStatus.RUNNING)

    first = await run_store.request_cancel(run.run_id)
    again = await run_store.request_cancel(run.run_id)

    assert first.status is RunStatus.RUNNING
    near_now(first.cancel_requested_at)
    assert again.cancel_requested_at == first.cancel_requested_at
    cancelled = await run_store.transition(run.run_id, RunStatus.CANCELLED)
    assert cancelled.cancel_requested_at == first.cancel_requested_at


async def test_asking_to_cancel_a_finished_run_changes_nothing(run_store):
    run = await run_store.create(NewRun(job="nightly"))
    done = await run_store.transition(run.run_id, RunStatus.SUCCEEDED, exit_code=0)

    assert await run_store.request_cancel(run.run_id) == done
    assert await run_store.get(run.run_id) == done


async def test_artifacts_can_be_recorded_with_the_final_status(run_store):
    run = await run_store.create(NewRun(job="nightly"))
    artifacts = (
        RunArtifact(name="report.csv", size_bytes=10, sha256="AB" * 32),
        RunArtifact(name="sub/dir/empty.txt", size_bytes=0, sha256="cd" * 32),
    )

    done = await run_store.transition(run.run_id, RunStatus.SUCCEEDED, artifacts=artifacts)

    assert done.artifacts == (
        RunArtifact(name="report.csv", size_bytes=10, sha256="ab" * 32),
        RunArtifact(name="sub/dir/empty.txt", size_bytes=0, sha256="cd" * 32),
    )
    assert (await run_store.get(run.run_id)).artifacts == done.artifacts

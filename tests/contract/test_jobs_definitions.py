"""Job definitions in the store: saved whole, revised on every save, listed by name,
deleted, and kept across restarts — on every backend."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from store.jobs.errors import InvalidJobRecord
from store.jobs.models import (
    JobDefinition,
    NewRun,
    OutputLimitAction,
    Resources,
)

CLOCK_SLACK = timedelta(seconds=2)


def git_job(name: str = "nightly-report", **overrides: object) -> JobDefinition:
    fields: dict[str, object] = {
        "name": name,
        "source": "git_tag",
        "source_fields": {"repo": "https://git.example.com/team/report.git", "tag": "v1.2.3"},
    }
    fields.update(overrides)
    return JobDefinition(**fields)  # type: ignore[arg-type]


def full_tarball_job() -> JobDefinition:
    """A definition with every field away from its default."""
    return JobDefinition(
        name="etl.load_v2",
        description="Loads the warehouse — ünïcode too",
        source="tarball_url",
        source_fields={
            "tarball_url": "https://downloads.example.com/etl-2.0.tar.gz",
            "tarball_sha256": "ab" * 32,
        },
        path="services/etl",
        dockerfile="docker/Dockerfile.prod",
        command=("python", "-m", "etl", "--date", ""),
        env=("MODE=full", "EMPTY=", "URL=https://x.example/?a=b=c"),
        queue="bulk",
        retries=3,
        timeout_seconds=7200,
        resources=Resources(memory_mb=2048, cpus=1.5, pids_limit=512),
        network="etl-net",
        artifacts_path="/out/artifacts",
        output_bytes=65536,
        on_output_limit=OutputLimitAction.FAIL,
        user="1000:1000",
    )


def near_now(moment: datetime | None) -> None:
    assert moment is not None
    assert moment.tzinfo is not None, "timestamps must be timezone-aware"
    assert abs(moment - datetime.now(UTC)) <= CLOCK_SLACK


def same_content(a: JobDefinition, b: JobDefinition) -> bool:
    strip = {"revision": 0, "created_at": None, "updated_at": None}
    return dataclasses.replace(a, **strip) == dataclasses.replace(b, **strip)


async def test_a_new_definition_is_created_at_revision_one(job_store):
    saved, created = await job_store.upsert(git_job())

    assert created is True
    assert saved.revision == 1
    near_now(saved.created_at)
    assert saved.updated_at == saved.created_at
    assert same_content(saved, git_job())


async def test_every_field_round_trips(job_store):
    definition = full_tarball_job()

    saved, _ = await job_store.upsert(definition)
    fetched = await job_store.get(definition.name)

    assert fetched == saved
    assert same_content(fetched, definition)
    assert isinstance(fetched.command, tuple)
    assert isinstance(fetched.env, tuple)
    assert fetched.source == "tarball_url"
    assert fetched.on_output_limit is OutputLimitAction.FAIL


async def test_saving_again_replaces_the_definition_and_increments_the_revision(job_store):
    first, _ = await job_store.upsert(full_tarball_job())
    await asyncio.sleep(0.01)
    changed = git_job(first.name, description="now from git", retries=1)

    second, created = await job_store.upsert(changed)

    assert created is False
    assert second.revision == 2
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    # Every field is replaced, including those the new version leaves at their defaults.
    assert same_content(second, changed)
    assert "tarball_url" not in second.source_fields
    assert second.env == ()
    assert second.output_bytes is None
    assert await job_store.get(first.name) == second


async def test_the_revision_and_timestamps_passed_in_are_ignored(job_store):
    bogus = git_job(revision=41, created_at=datetime(2000, 1, 1, tzinfo=UTC))

    saved, created = await job_store.upsert(bogus)

    assert created is True
    assert saved.revision == 1
    near_now(saved.created_at)


async def test_concurrent_saves_of_one_name_each_get_their_own_revision(job_store):
    results = await asyncio.gather(
        *(job_store.upsert(git_job(description=f"save {i}")) for i in range(10))
    )

    assert sorted(saved.revision for saved, _ in results) == list(range(1, 11))
    assert [created for _, created in results].count(True) == 1
    final = await job_store.get("nightly-report")
    assert final.revision == 10


async def test_get_of_an_unknown_name_is_none(job_store):
    assert await job_store.get("nope") is None


async def test_definitions_are_listed_by_name_with_paging(job_store):
    for name in ["delta", "alpha", "charlie", "bravo", "echo"]:
        await job_store.upsert(git_job(name))

    first = await job_store.list_jobs(limit=2, offset=0)
    rest = await job_store.list_jobs(limit=10, offset=2)
    beyond = await job_store.list_jobs(limit=10, offset=5)

    assert [d.name for d in first.items] == ["alpha", "bravo"]
    assert [d.name for d in rest.items] == ["charlie", "delta", "echo"]
    assert beyond.items == []
    assert first.total == rest.total == beyond.total == 5
    assert (first.limit, first.offset) == (2, 0)


async def test_an_empty_store_lists_nothing(job_store):
    page = await job_store.list_jobs(limit=10, offset=0)
    assert page.items == []
    assert page.total == 0


async def test_delete_says_whether_there_was_a_definition(job_store):
    await job_store.upsert(git_job())

    assert await job_store.delete("nightly-report") is True
    assert await job_store.get("nightly-report") is None
    assert await job_store.delete("nightly-report") is False
    assert (await job_store.list_jobs(limit=10, offset=0)).total == 0


async def test_a_deleted_definition_saved_again_starts_over(job_store):
    await job_store.upsert(git_job())
    await job_store.upsert(git_job())
    await job_store.delete("nightly-report")

    saved, created = await job_store.upsert(git_job())

    assert created is True
    assert saved.revision == 1


async def test_deleting_a_definition_keeps_its_runs(job_store, run_store):
    await job_store.upsert(git_job())
    run = await run_store.create(NewRun(job="nightly-report"))

    await job_store.delete("nightly-report")

    assert await run_store.get(run.run_id) == run


@pytest.mark.parametrize("name", ["", "Upper", "-lead", ".lead", "a b", "x" * 64, "a/b"])
async def test_a_name_the_store_cannot_key_by_is_refused(job_store, name):
    with pytest.raises(InvalidJobRecord, match="job name"):
        await job_store.upsert(git_job(name))
    assert (await job_store.list_jobs(limit=10, offset=0)).total == 0


async def test_text_with_nul_characters_is_refused_alike_on_every_backend(job_store):
    with pytest.raises(InvalidJobRecord, match=r"env\[0\]"):
        await job_store.upsert(git_job(env=("A=\0",)))


async def test_a_negative_page_bound_is_refused(job_store):
    with pytest.raises(InvalidJobRecord):
        await job_store.list_jobs(limit=-1, offset=0)
    with pytest.raises(InvalidJobRecord):
        await job_store.list_jobs(limit=1, offset=-1)


async def test_definitions_survive_closing_and_reopening_the_database(job_stores_factory):
    stores = await job_stores_factory.open()
    saved, _ = await stores.jobs.upsert(full_tarball_job())
    await job_stores_factory.close(stores)

    reopened = await job_stores_factory.open()

    assert await reopened.jobs.get(saved.name) == saved

"""The event store keeps what it acknowledged, in order, with ids that only go up.

Real files in a temporary directory; every test reopens the store the way a restarted
service would.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from store.events import (
    Durability,
    EventFilter,
    EventStoreClosed,
    EventStoreOptions,
    EventType,
    FileEventStore,
    InvalidEvent,
    NewEvent,
    Stream,
)

OpenStore = Callable[..., Awaitable[FileEventStore]]


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[OpenStore]:
    opened: list[FileEventStore] = []

    async def open_(directory: Path | None = None, **options: Any) -> FileEventStore:
        store = await FileEventStore.open(
            EventStoreOptions(directory=directory or tmp_path / "events", **options)
        )
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


def run_event(job: str, run_id: str, type: str = EventType.RUN_STARTED, **data: Any) -> NewEvent:
    return NewEvent.run(type, job=job, run_id=run_id, **data)


async def test_ids_increase_across_streams_and_restarts(open_store: OpenStore) -> None:
    store = await open_store()
    first = await store.append(run_event("build", "r1"))
    second = await store.append(NewEvent.schedule(EventType.SCHEDULE_FIRED, schedule="nightly"))
    many = await store.append_many([run_event("build", "r2") for _ in range(5)])
    ids = [first.id, second.id, *(e.id for e in many)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert [e.id for e in many] == list(range(many[0].id, many[0].id + 5))
    await store.close()

    reopened = await open_store()
    assert reopened.last_id == ids[-1]
    after = await reopened.append(run_event("build", "r3"))
    assert after.id > ids[-1]
    assert after.at >= many[-1].at


async def test_concurrent_appends_all_get_distinct_ids_and_are_stored(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    events = await asyncio.gather(
        *(store.append(run_event(f"job-{i % 7}", f"run-{i}", n=i)) for i in range(500))
    )
    assert len({e.id for e in events}) == 500
    await store.close()
    reopened = await open_store()
    stored = await reopened.since(0, limit=10_000)
    assert sorted(e.id for e in events) == [e.id for e in stored]
    assert {e.data["n"] for e in stored} == set(range(500))


async def test_latest_returns_the_newest_events_of_one_key(open_store: OpenStore) -> None:
    store = await open_store(segment_bytes=4096)
    for i in range(300):
        await store.append(run_event(f"job-{i % 3}", f"run-{i}", n=i))
    latest = await store.latest(Stream.RUNS, "job-1", 25)
    assert [e.data["n"] for e in latest] == list(range(298, 298 - 75, -3))
    assert all(e.key == "job-1" for e in latest)
    assert await store.latest(Stream.RUNS, "nobody", 25) == []
    assert await store.latest(Stream.SCHEDULES, "job-1", 25) == []


async def test_since_and_by_run_return_events_in_id_order(open_store: OpenStore) -> None:
    store = await open_store()
    a = await store.append(run_event("build", "r1", EventType.RUN_QUEUED))
    s = await store.append(NewEvent.schedule(EventType.SCHEDULE_FIRED, schedule="nightly"))
    b = await store.append(run_event("build", "r2", EventType.RUN_QUEUED))
    c = await store.append(run_event("build", "r1", EventType.RUN_SUCCEEDED, exitCode=0))

    assert [e.id for e in await store.since(0)] == [a.id, s.id, b.id, c.id]
    assert [e.id for e in await store.since(a.id)] == [s.id, b.id, c.id]
    assert [e.id for e in await store.since(0, limit=2)] == [a.id, s.id]
    runs_only = EventFilter(streams=frozenset({Stream.RUNS}))
    assert [e.id for e in await store.since(0, runs_only)] == [a.id, b.id, c.id]
    by_run = await store.by_run("r1")
    assert [(e.id, e.type) for e in by_run] == [(a.id, "RunQueued"), (c.id, "RunSucceeded")]
    assert by_run[1].data == {"exitCode": 0}
    assert [e.id for e in await store.by_run("r1", after_id=a.id)] == [c.id]


async def test_segments_roll_over_at_their_size_and_reopen_intact(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = await open_store(segment_bytes=4096)
    for chunk in range(20):
        await store.append_many([run_event("build", f"r{chunk}", line="x" * 100)] * 10)
    await store.close()
    segments = sorted((tmp_path / "events" / "runs").glob("*.jsonl"))
    assert len(segments) > 5
    assert all(path.stat().st_size <= 4096 + 10 * 200 for path in segments)
    reopened = await open_store(segment_bytes=4096)
    stored = await reopened.since(0, limit=1000)
    assert [e.id for e in stored] == list(range(1, 201))
    assert len(await reopened.by_run("r7")) == 10


async def test_a_torn_last_line_is_ignored_and_cut(open_store: OpenStore, tmp_path: Path) -> None:
    store = await open_store()
    kept = await store.append_many([run_event("build", "r1", n=i) for i in range(3)])
    await store.close()
    active = sorted((tmp_path / "events" / "runs").glob("*.jsonl"))[-1]
    with open(active, "ab") as handle:
        handle.write(b'{"id":99999,"atMs":1,"key":"build","type":"RunStar')
    reopened = await open_store()
    assert [e.id for e in await reopened.since(0)] == [e.id for e in kept]
    new = await reopened.append(run_event("build", "r2"))
    assert new.id == kept[-1].id + 1
    assert active.read_bytes().endswith(b"\n")
    assert b'RunStar"' not in active.read_bytes()
    assert b"99999" not in active.read_bytes()


@pytest.mark.parametrize("durability", list(Durability))
async def test_every_durability_mode_keeps_acknowledged_events(
    open_store: OpenStore, durability: Durability
) -> None:
    store = await open_store(durability=durability, fsync_interval=0.01)
    events = await asyncio.gather(*(store.append(run_event("j", f"r{i}")) for i in range(50)))
    await asyncio.sleep(0.05)
    await store.close()
    reopened = await open_store(durability=durability)
    assert [e.id for e in await reopened.since(0)] == sorted(e.id for e in events)


async def test_two_stores_sharing_a_directory_never_reuse_an_id(
    open_store: OpenStore, tmp_path: Path
) -> None:
    # Two store objects on one directory behave like two processes: flock(2) locks belong
    # to the open file description, so they exclude each other just the same.
    one = await open_store(segment_bytes=4096, poll_interval=0.05)
    two = await open_store(segment_bytes=4096, poll_interval=0.05)
    results = await asyncio.gather(
        *(
            (one if i % 2 else two).append(run_event(f"job-{i % 3}", f"run-{i}", n=i))
            for i in range(400)
        )
    )
    ids = [e.id for e in results]
    assert len(set(ids)) == 400
    await asyncio.sleep(0.3)  # both catch up with the other's appends
    for store in (one, two):
        stored = await store.since(0, limit=1000)
        assert sorted(ids) == [e.id for e in stored]
        latest = await store.latest(Stream.RUNS, "job-0", 5)
        newest = sorted((e.id for e in results if e.key == "job-0"), reverse=True)[:5]
        assert [e.id for e in latest] == newest


async def test_invalid_events_are_refused_before_anything_is_written(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    with pytest.raises(InvalidEvent):
        NewEvent(stream=Stream.RUNS, key="j", type="not past tense!")
    with pytest.raises(InvalidEvent):
        await store.append(NewEvent.run(EventType.RUN_STARTED, job="j", run_id="r", x=object()))
    with pytest.raises(InvalidEvent):
        await store.append(NewEvent.run(EventType.RUN_STARTED, job="j", run_id="r", x=float("nan")))
    assert await store.since(0) == []
    await store.close()
    with pytest.raises(EventStoreClosed):
        await store.append(run_event("j", "r"))


async def test_reopening_a_large_store_finds_every_key(open_store: OpenStore) -> None:
    store = await open_store(segment_bytes=64 * 1024)
    for first in range(0, 20_000, 2_000):
        await store.append_many(
            [
                run_event(f"job-{i % 100}", f"run-{i // 10}", n=i)
                for i in range(first, first + 2_000)
            ]
        )
    await store.close()
    reopened = await open_store(segment_bytes=64 * 1024)
    assert reopened.count(Stream.RUNS) == 20_000
    latest = await reopened.latest(Stream.RUNS, "job-42", 3)
    assert [e.data["n"] for e in latest] == [19_942, 19_842, 19_742]
    assert [e.data["n"] for e in await reopened.by_run("run-1234")] == list(range(12_340, 12_350))
    assert os.listdir(reopened.options.directory / "runs")

"""The live hub: subscribers get stored events after their last id, then live ones, with
no gap and no duplicate (also across a restart of the store); slow ones are dropped and
resume; writers never wait for them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from store.events import (
    AuditLog,
    Event,
    EventFilter,
    EventStoreOptions,
    EventType,
    FileEventStore,
    NewEvent,
    Stream,
    SubscriberDropped,
)
from store.events.protocol import EventSubscription

OpenStore = Callable[..., Awaitable[FileEventStore]]


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[OpenStore]:
    opened: list[FileEventStore] = []

    async def open_(**options: Any) -> FileEventStore:
        store = await FileEventStore.open(
            EventStoreOptions(directory=tmp_path / "events", **options)
        )
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


def run(n: int, job: str = "build") -> NewEvent:
    return NewEvent.run(EventType.RUN_OUTPUT_EMITTED, job=job, run_id=f"r{n // 100}", n=n)


async def take(sub: EventSubscription, count: int, timeout: float = 10.0) -> list[Event]:
    async def go() -> list[Event]:
        got = []
        async for event in sub:
            got.append(event)
            if len(got) == count:
                break
        return got

    return await asyncio.wait_for(go(), timeout)


async def test_a_subscriber_sees_live_events_with_their_durable_ids(open_store: OpenStore) -> None:
    store = await open_store()
    sub = store.subscribe(after_id=store.last_id)
    reader = asyncio.create_task(take(sub, 3))
    await asyncio.sleep(0.05)
    a = await store.append(run(1))
    s = await store.append(NewEvent.schedule(EventType.SCHEDULE_FIRED, schedule="nightly"))
    entry = await AuditLog(store).record(
        actor="alice", request_id="q", action="job.run", target="build", status="ok"
    )
    got = await reader
    assert [(e.id, e.stream) for e in got] == [
        (a.id, Stream.RUNS),
        (s.id, Stream.SCHEDULES),
        (entry.id, Stream.AUDIT),
    ]
    assert sub.last_id == entry.id


async def test_resume_after_1000_missed_events_across_a_restart(open_store: OpenStore) -> None:
    store = await open_store(segment_bytes=16 * 1024)
    await store.append_many([run(n) for n in range(10)])
    sub = store.subscribe(after_id=0)
    seen = await take(sub, 10)
    sub.close()
    last_seen = seen[-1].id

    # 1,000 events happen while the subscriber is away, half of them after a restart
    await store.append_many([run(n) for n in range(10, 510)])
    await store.close()
    store = await open_store(segment_bytes=16 * 1024)
    for n in range(510, 1010):
        await store.append(run(n, job="build" if n % 2 else "deploy"))

    resumed = store.subscribe(after_id=last_seen)

    async def keep_writing() -> None:  # live events keep coming while it replays
        for n in range(1010, 1210):
            await store.append(run(n))

    writer = asyncio.create_task(keep_writing())
    got = await take(resumed, 1200)
    await writer
    assert [e.data["n"] for e in got] == list(range(10, 1210))
    ids = [e.id for e in got]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert ids[0] > last_seen


async def test_filters_select_streams_keys_and_runs(open_store: OpenStore) -> None:
    store = await open_store()
    by_key = store.subscribe(0, EventFilter(key="deploy"))
    by_run = store.subscribe(0, EventFilter(run_id="r3"))
    schedules = store.subscribe(0, EventFilter(streams=frozenset({Stream.SCHEDULES})))
    await store.append_many([run(n, job="deploy" if n % 3 == 0 else "build") for n in range(400)])
    await store.append(NewEvent.schedule(EventType.SCHEDULE_FIRED, schedule="nightly"))
    assert [e.data["n"] for e in await take(by_key, 134)] == list(range(0, 400, 3))
    assert [e.data["n"] for e in await take(by_run, 100)] == list(range(300, 400))
    assert [e.key for e in await take(schedules, 1)] == ["nightly"]


async def test_a_slow_subscriber_is_dropped_without_slowing_writers_and_can_resume(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    fast = store.subscribe(after_id=0, buffer=10_000)
    slow = store.subscribe(after_id=0, buffer=16)
    # Both read once and wait: having caught up with the store, they are now live.
    readers = [asyncio.create_task(take(sub, 1)) for sub in (fast, slow)]
    await asyncio.sleep(0.05)
    first = await store.append(run(0))
    assert [[e.id for e in await reader] for reader in readers] == [[first.id], [first.id]]

    events = await asyncio.wait_for(store.append_many([run(n) for n in range(1, 201)]), 5)
    assert len(events) == 200  # the writer finished although the slow reader read nothing

    delivered = []

    async def read_all() -> None:
        async for event in slow:
            delivered.append(event.data["n"])

    with pytest.raises(SubscriberDropped) as dropped:
        await read_all()
    assert delivered == list(range(1, 17))  # what fit in its buffer, then the signal
    assert dropped.value.last_id == slow.last_id == events[15].id

    resumed = store.subscribe(after_id=dropped.value.last_id)
    assert [e.data["n"] for e in await take(resumed, 184)] == list(range(17, 201))
    assert [e.data["n"] for e in await take(fast, 200)] == list(range(1, 201))


async def test_subscriptions_end_when_the_store_closes(open_store: OpenStore) -> None:
    store = await open_store()
    await store.append(run(0))
    sub = store.subscribe(after_id=0)
    assert len(await take(sub, 1)) == 1
    waiting = asyncio.create_task(take(sub, 5))
    await asyncio.sleep(0.05)
    await store.close()
    assert await asyncio.wait_for(waiting, 5) == []


async def test_events_of_another_store_on_the_directory_reach_subscribers(
    open_store: OpenStore,
) -> None:
    here = await open_store(poll_interval=0.05)
    there = await open_store(poll_interval=0.05)
    sub = here.subscribe(after_id=here.last_id)
    reader = asyncio.create_task(take(sub, 50))
    await asyncio.sleep(0.05)
    written = [await there.append(run(n)) for n in range(50)]
    got = await reader
    assert [e.id for e in got] == [e.id for e in written]

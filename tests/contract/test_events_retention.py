"""Retention removes the oldest events by count and by age; the audit archive holds
exactly what retention removed, and ids keep going up afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from store.events import (
    AuditLog,
    AuditQuery,
    EventStoreOptions,
    EventType,
    FileEventStore,
    NewEvent,
    RetentionPolicy,
    Stream,
)

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


def keep(**policies: RetentionPolicy) -> dict[Stream, RetentionPolicy]:
    return {Stream(name): policy for name, policy in policies.items()}


async def record(log: AuditLog, n: int, **fields: Any) -> list[int]:
    ids = []
    for i in range(n):
        entry = await log.record(
            actor=fields.get("actor", "alice"),
            request_id=f"req-{i}",
            action=fields.get("action", "job.run"),
            target=fields.get("target", f"job-{i % 4}"),
            status="ok",
            body=b"{}",
            detail=f"detail {i}",
        )
        ids.append(entry.id)
    return ids


async def test_count_per_key_keeps_the_newest_events_of_each_key(open_store: OpenStore) -> None:
    store = await open_store(
        segment_bytes=4096, retention=keep(runs=RetentionPolicy(max_per_key=10))
    )
    for i in range(200):
        await store.append(
            NewEvent.run(EventType.RUN_STARTED, job=f"job-{i % 4}", run_id=f"r{i}", n=i)
        )
    report = await store.apply_retention()
    assert report.removed[Stream.RUNS] == 160
    for k in range(4):
        latest = await store.latest(Stream.RUNS, f"job-{k}", 100)
        assert [e.data["n"] for e in latest] == list(range(196 + k, 196 + k - 40, -4))
    assert store.count(Stream.RUNS) == 40
    assert await store.by_run("r0") == []
    assert len(await store.by_run("r199")) == 1
    await store.close()

    reopened = await open_store(retention=keep(runs=RetentionPolicy(max_per_key=10)))
    stored = await reopened.since(0, limit=1000)
    assert sorted(e.data["n"] for e in stored) == list(range(160, 200))
    assert (await reopened.append(NewEvent.run("RunQueued", job="job-0", run_id="x"))).id == 201


async def test_total_count_and_age_trim_the_audit_log_and_archive_what_they_remove(
    open_store: OpenStore, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    store = await open_store(
        segment_bytes=4096,
        archive_dir=archive,
        retention=keep(audit=RetentionPolicy(max_total=30, max_age=timedelta(seconds=0.5))),
    )
    log = AuditLog(store)
    old = await record(log, 50)
    report = await store.apply_retention()
    assert report.removed[Stream.AUDIT] == 20
    assert report.archived == 20
    kept = [e.id for e in reversed(await log.recent(AuditQuery(limit=1000)))]
    assert kept == old[20:]

    await asyncio.sleep(0.6)
    fresh = await record(log, 5)
    report = await store.apply_retention()
    assert report.removed[Stream.AUDIT] == 30
    assert [e.id for e in reversed(await log.recent(AuditQuery(limit=1000)))] == fresh

    rows = [
        json.loads(line)
        for path in sorted(archive.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert [row["id"] for row in rows] == old
    assert set(rows[0]) == {
        "id",
        "atMs",
        "actor",
        "requestId",
        "action",
        "target",
        "status",
        "payloadHash",
        "detail",
    }
    assert rows[3]["detail"] == "detail 3"
    assert rows[3]["requestId"] == "req-3"


async def test_without_an_archive_dir_nothing_is_archived(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = await open_store(retention=keep(audit=RetentionPolicy(max_total=5)))
    await record(AuditLog(store), 12)
    report = await store.apply_retention()
    assert report.removed[Stream.AUDIT] == 7
    assert report.archived == 0
    assert report.archive_file is None
    assert store.count(Stream.AUDIT) == 5


async def test_ids_go_on_upward_when_retention_empties_the_store(open_store: OpenStore) -> None:
    store = await open_store(
        retention=keep(schedules=RetentionPolicy(max_age=timedelta(seconds=0.1)))
    )
    events = await store.append_many(
        [NewEvent.schedule(EventType.SCHEDULE_FIRED, schedule="nightly")] * 10
    )
    await asyncio.sleep(0.2)
    report = await store.apply_retention()
    assert report.removed[Stream.SCHEDULES] == 10
    assert await store.since(0) == []
    await store.close()
    reopened = await open_store()
    assert reopened.last_id == events[-1].id
    after = await reopened.append(NewEvent.schedule(EventType.SCHEDULE_FIRED, schedule="nightly"))
    assert after.id == events[-1].id + 1


async def test_a_retention_pass_runs_in_the_background(open_store: OpenStore) -> None:
    store = await open_store(
        retention=keep(runs=RetentionPolicy(max_per_key=3)), retention_interval=0.05
    )
    await store.append_many(
        [NewEvent.run("RunStarted", job="j", run_id=f"r{i}") for i in range(10)]
    )
    for _ in range(100):
        if store.count(Stream.RUNS) == 3:
            break
        await asyncio.sleep(0.02)
    assert [e.run_id for e in await store.latest(Stream.RUNS, "j", 10)] == ["r9", "r8", "r7"]
    # appends go on into a fresh active segment after the old one was compacted
    more = await store.append(NewEvent.run("RunStarted", job="j", run_id="r10"))
    assert (await store.latest(Stream.RUNS, "j", 1))[0].id == more.id


async def test_another_store_on_the_directory_sees_what_retention_removed(
    open_store: OpenStore,
) -> None:
    policy = keep(runs=RetentionPolicy(max_per_key=5))
    one = await open_store(segment_bytes=4096, retention=policy, poll_interval=0.05)
    two = await open_store(segment_bytes=4096, poll_interval=0.05)
    await one.append_many([NewEvent.run("RunStarted", job="j", run_id=f"r{i}") for i in range(50)])
    await one.apply_retention()
    await asyncio.sleep(0.2)
    assert [e.run_id for e in await two.since(0, limit=100)] == [f"r{i}" for i in range(45, 50)]
    new = await two.append(NewEvent.run("RunStarted", job="j", run_id="r50"))
    assert new.id == 51
    await asyncio.sleep(0.2)
    assert [e.run_id for e in await one.latest(Stream.RUNS, "j", 2)] == ["r50", "r49"]

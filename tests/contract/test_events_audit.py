"""The audit log records who did what, accepted or refused, and lists it newest first."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from store.events import (
    AuditLog,
    AuditQuery,
    AuditStatus,
    EventFilter,
    EventStoreOptions,
    FileEventStore,
    InvalidEvent,
    Stream,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileEventStore]:
    opened = await FileEventStore.open(EventStoreOptions(directory=tmp_path / "events"))
    yield opened
    await opened.close()


async def test_an_entry_keeps_every_field_of_the_spec(
    store: FileEventStore, tmp_path: Path
) -> None:
    log = AuditLog(store)
    body = b'{"weight": 3}'
    entry = await log.record(
        actor="CN=ops-1,O=Longshore",
        request_id="req-42",
        action="queue.update_weight",
        target="default",
        status="error",
        body=body,
        detail="weight must be between 1 and 1000",
    )
    assert entry.status is AuditStatus.ERROR
    assert entry.payload_hash == hashlib.sha256(body).hexdigest()
    await store.close()
    reopened = await FileEventStore.open(EventStoreOptions(directory=tmp_path / "events"))
    try:
        [again] = await AuditLog(reopened).recent()
        assert again == entry
        [event] = await reopened.since(0, EventFilter(streams=frozenset({Stream.AUDIT})))
        assert event.id == entry.id
        assert event.key == "default"
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    ("actor", "action", "status"),
    [
        ("", "job.run", "ok"),
        ("  ", "job.run", "ok"),
        ("a", "jobrun", "ok"),
        ("a", "job.run", "maybe"),
    ],
)
async def test_entries_without_an_actor_or_with_a_bad_action_or_status_are_refused(
    store: FileEventStore, actor: str, action: str, status: str
) -> None:
    with pytest.raises(InvalidEvent):
        await AuditLog(store).record(
            actor=actor, request_id="r", action=action, target="t", status=status
        )
    assert await AuditLog(store).recent() == []


async def test_recent_lists_newest_first_with_filters(store: FileEventStore) -> None:
    log = AuditLog(store)
    for i in range(30):
        await log.record(
            actor="alice" if i % 2 else "bob",
            request_id=f"r{i}",
            action="dlq.replay" if i % 3 == 0 else "job.run",
            target=f"t{i % 4}",
            status="ok",
        )
    assert [e.request_id for e in await log.recent(AuditQuery(limit=3))] == ["r29", "r28", "r27"]
    assert [e.request_id for e in await log.recent(AuditQuery(target="t1", limit=2))] == [
        "r29",
        "r25",
    ]
    replays = await log.recent(AuditQuery(action="dlq.replay", actor="bob"))
    assert [e.request_id for e in replays] == [f"r{i}" for i in range(24, -1, -6)]
    assert len(await log.recent()) == 30

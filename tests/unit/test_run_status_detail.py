"""``statusDetail`` of a run, read from its events in a real file event store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from admin.run_status_detail import waiting_detail
from store.events.file import FileEventStore
from store.events.models import EventType, NewEvent, Stream
from store.events.options import EventStoreOptions


def event(kind: str, run_id: str, **data: object) -> NewEvent:
    return NewEvent(stream=Stream.RUNS, key="job", type=kind, run_id=run_id, data=data)


async def test_a_run_waits_until_a_status_event_or_its_next_try_is_long_overdue(tmp_path: Path):
    store = await FileEventStore.open(EventStoreOptions(directory=tmp_path / "events"))
    try:
        await store.append(event(EventType.RUN_QUEUED, "r1"))
        assert await waiting_detail(store, "r1") is None
        await store.append(event(EventType.RUN_FETCH_STARTED, "r1"))
        await store.append(
            event(EventType.RUN_WAITING, "r1", detail="waiting for the engine", retryInSeconds=4)
        )
        assert await waiting_detail(store, "r1") == "waiting for the engine"
        assert await waiting_detail(store, "other") is None
        # The wait ended without a status change: the detail lapses once the try is overdue.
        later = datetime.now(UTC) + timedelta(seconds=30)
        assert await waiting_detail(store, "r1", now=later) is None
        # Live output does not end a wait; the next status does.
        await store.append(event(EventType.RUN_OUTPUT_EMITTED, "r1", text="x"))
        assert await waiting_detail(store, "r1") == "waiting for the engine"
        await store.append(event(EventType.RUN_BUILD_STARTED, "r1"))
        assert await waiting_detail(store, "r1") is None
    finally:
        await store.close()

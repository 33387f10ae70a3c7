"""The live output of a run as ``RunOutputEmitted`` events, on a real event store: the rate
limit between events never holds back the end of a run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import jobrunner.output_events as output_events_module
from jobrunner.output_events import OutputEvents
from store.events import EventStoreOptions, EventType, FileEventStore
from store.jobs.models import Run, RunStatus, RunTrigger


def a_run() -> Run:
    return Run(
        run_id="run-output-1",
        task_id=1,
        job="nightly",
        attempt=1,
        trigger=RunTrigger.API,
        actor="tester",
        schedule_name=None,
        status=RunStatus.RUNNING,
        queued_at=datetime.now(UTC),
    )


async def test_closing_sends_what_waits_behind_the_rate_limit_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One event per 1,000 s: the second chunk waits behind the limit until close().
    monkeypatch.setattr(output_events_module, "OUTPUT_EVENTS_PER_SECOND", 0.001)
    async with await FileEventStore.open(EventStoreOptions(directory=tmp_path)) as store:
        live = OutputEvents(store, a_run())
        await live.feed(b"first line\n")
        subscription = store.subscribe(0)
        first = await anext(subscription)
        assert first.data["text"] == "first line\n"
        await live.feed(b"last line\n")
        await live.close(drain=True)
        assert (live.sent, live.dropped) == (2, 0)
        second = await anext(subscription)
        assert second.type == EventType.RUN_OUTPUT_EMITTED
        assert (second.data["seq"], second.data["text"]) == (1, "last line\n")
        subscription.close()

"""``longshore serve`` fires durable schedules (presets from the environment), keeps firing
after a restart without enqueueing a tick twice, and records schedule events in the event
store; ``longshore worker`` never fires schedules."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scheduler.factories import Firing
from service.lifecycle import open_runtime
from service.settings import load_settings
from store.events import EventStoreOptions, EventType, FileEventStore, Stream
from store.jobs.models import JobDefinition, NewRun, RunStatus, RunTrigger
from store.schedules.models import Schedule
from tests.acceptance.conftest import Longshore, Process, wait_until

only_embedded = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

SCHEDULE = "builtin.noop"
EVERY_SECOND = {
    "WORKER_DURABLE_CRON_HANDLERS": "builtin.noop",
    "WORKER_DURABLE_CRON_PRESETS": f"{SCHEDULE}=* * * * * *",
    "WORKER_SHUTDOWN_GRACE_SECONDS": "2",
}


def schedule_keys(longshore: Longshore) -> list[str]:
    tasks = longshore.json("tasks", "list", "--limit", "1000")["tasks"]
    return [task["key"] for task in tasks if (task["key"] or "").startswith("schedule:")]


def fired_events(event_dir: Path) -> list[dict[str, object]]:
    async def read() -> list[dict[str, object]]:
        store = await FileEventStore.open(
            EventStoreOptions(directory=event_dir, retention={}, poll_interval=0.05)
        )
        try:
            events = await store.latest(Stream.SCHEDULES, SCHEDULE, 1000)
        finally:
            await store.close()
        return [dict(e.data) for e in events if e.type == EventType.SCHEDULE_FIRED]

    return asyncio.run(read())


@pytest.mark.slow
@only_embedded
def test_serve_fires_presets_exactly_once_across_a_restart_and_a_worker_never_fires(
    longshore: Longshore, tmp_path: Path
):
    event_dir = tmp_path / "data" / "events"

    def completed_at_least(count: int, process: Process) -> bool:
        process.assert_running()
        return longshore.stats()["completed"] >= count

    # First run: the preset becomes a schedule and fires every second; noop runs it.
    server = longshore.start("serve", name="serve-1", env=EVERY_SECOND)
    wait_until(lambda: completed_at_least(3, server), "serve fires the preset", timeout=30)
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0, server.output()
    first = schedule_keys(longshore)
    assert len(first) >= 3
    assert all(key.startswith(f"schedule:{SCHEDULE}:") for key in first), first

    # Restart: it continues firing, and no tick is enqueued twice.
    server = longshore.start("serve", name="serve-2", env=EVERY_SECOND)
    wait_until(
        lambda: completed_at_least(len(first) + 3, server), "serve keeps firing after a restart"
    )
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0, server.output()
    keys = schedule_keys(longshore)
    duplicates = [key for key, count in Counter(keys).items() if count > 1]
    assert duplicates == [], duplicates
    assert set(first) < set(keys)
    assert longshore.stats()["dead"] == 0

    # The scheduler recorded one ScheduleFired event per enqueued tick, with its key.
    fired = fired_events(event_dir)
    assert sorted(str(event["key"]) for event in fired) == sorted(keys)

    # A worker alone, with the same settings, does not fire the (existing) schedule.
    before = len(keys)
    worker = longshore.start("worker", name="worker", env=EVERY_SECOND)
    time.sleep(4)
    worker.assert_running()
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker.output()
    assert len(schedule_keys(longshore)) == before


async def test_every_job_definition_is_a_factory_of_its_name_until_it_is_deleted(
    tmp_path: Path,
):
    """The lifecycle's job factories follow the job store; a scheduled job's task is a
    ``job.run`` without a run id (the handler records the run), and ``replace`` can cancel
    its running run through the run store."""
    settings = load_settings(
        {}, data_dir=tmp_path / "data", durable_cron_handlers=("builtin.noop",)
    )
    async with open_runtime(settings, role="worker") as runtime:
        assert runtime.scheduler is None  # a worker never fires
        assert runtime.factories.names() == ["builtin.noop"]
        job = JobDefinition(
            name="nightly-report",
            source="tarball_path",
            source_fields={"tarball_path": "report.tar"},
            queue="reports",
            retries=2,
        )
        await runtime.stores.jobs.upsert(job)
        await runtime.job_factories.sync()
        factory = runtime.factories.require("nightly-report")

        task = await factory.produce(
            Firing(schedule="nightly", fire_time=datetime(2030, 1, 1, tzinfo=UTC))
        )
        assert task.handler == "job.run"
        assert task.queue == "reports"
        assert task.retry.max_attempts == 3
        assert dict(task.payload) == {
            "job": "nightly-report",
            "trigger": "schedule",
            "scheduleName": "nightly",
            "actor": "scheduler",
        }

        enqueued = await runtime.stores.queue.enqueue(task)
        run = await runtime.stores.runs.create(
            NewRun(
                job="nightly-report",
                task_id=enqueued.task.id,
                attempt=1,
                trigger=RunTrigger.SCHEDULE,
                actor="scheduler",
                schedule_name="nightly",
            )
        )
        await runtime.stores.runs.transition(run.run_id, RunStatus.FETCHING)
        assert factory.cancel_running is not None
        assert await factory.cancel_running(enqueued.task) is True
        cancelled = await runtime.stores.runs.get(run.run_id)
        assert cancelled is not None
        assert cancelled.cancel_requested_at is not None

        # Saving a schedule sees a job created a moment ago, without waiting for the refresh.
        await runtime.stores.jobs.upsert(
            JobDefinition(
                name="fresh", source="tarball_path", source_fields={"tarball_path": "x.tar"}
            )
        )
        saved, created = await runtime.manager.save(Schedule(name="fresh", spec="@daily"))
        assert created
        assert saved.factory == "fresh"

        await runtime.stores.jobs.delete("nightly-report")
        await runtime.job_factories.sync()
        assert "nightly-report" not in runtime.factories
        assert runtime.factories.names() == ["builtin.noop", "fresh"]

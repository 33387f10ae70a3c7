"""Schedules in the store: saved whole, revised on every save, paused one by one or all at
once, their firings recorded, every change counted and announced, kept across restarts, and
leadership held by one lock at a time — on every backend."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from store.queue.models import NewTask, TaskState
from store.schedules.errors import InvalidSchedule, ScheduleNotFound
from store.schedules.models import CatchUp, FiringRecord, OverlapPolicy, Schedule

CLOCK_SLACK = timedelta(seconds=2)


@dataclass
class ScheduleStoreFactory:
    """Opens (and finally closes) schedule stores, each on its own database object, on
    this test's database: a second store is what another process would see."""

    backend: str
    location: Any
    _open: list[tuple[Any, Any]] = field(default_factory=list)

    async def open(self) -> Any:
        if self.backend == "sqlite":
            from store.db.sqlite import SqliteDatabase
            from store.schedules.sqlite import SqliteScheduleStore

            db: Any = await SqliteDatabase.open(self.location)
            make: Any = SqliteScheduleStore
        else:
            from store.db.postgres import PostgresDatabase
            from store.schedules.postgres import PostgresScheduleStore

            db = await PostgresDatabase.open(self.location)
            make = PostgresScheduleStore
        try:
            await db.migrate()
        except BaseException:
            await db.close()
            raise
        store = make(db)
        self._open.append((store, db))
        return store

    async def close(self, store: Any) -> None:
        for index, (opened, db) in enumerate(self._open):
            if opened is store:
                del self._open[index]
                try:
                    await store.close()
                finally:
                    await db.close()
                return
        raise AssertionError("not opened by this factory")

    async def close_all(self) -> None:
        while self._open:
            await self.close(self._open[-1][0])


@pytest.fixture
async def schedule_stores(backend: str, queue_location: Any) -> AsyncIterator[ScheduleStoreFactory]:
    factory = ScheduleStoreFactory(backend=backend, location=queue_location)
    try:
        yield factory
    finally:
        await factory.close_all()


@pytest.fixture
async def store(schedule_stores: ScheduleStoreFactory) -> Any:
    """A :class:`store.schedules.protocol.ScheduleStore` on a fresh database."""
    return await schedule_stores.open()


def nightly(**overrides: Any) -> Schedule:
    fields: dict[str, Any] = {"name": "nightly-report", "spec": "0 3 * * *"}
    fields.update(overrides)
    return Schedule(**fields)


def near_now(moment: datetime | None) -> None:
    assert moment is not None
    assert moment.tzinfo is not None
    assert abs(moment - datetime.now(UTC)) < CLOCK_SLACK


# --- saving ---------------------------------------------------------------------------------


async def test_a_new_schedule_is_saved_with_its_defaults(store: Any) -> None:
    saved, created = await store.upsert(nightly())

    assert created
    assert saved.name == "nightly-report"
    assert saved.spec == "0 3 * * *"
    assert saved.timezone == "UTC"
    assert saved.factory == "nightly-report", "the factory defaults to the schedule's name"
    assert saved.payload == {}
    assert (saved.paused, saved.durable) == (False, True)
    assert saved.overlap_policy is OverlapPolicy.ALLOW
    assert saved.catch_up is CatchUp.NONE
    assert saved.revision == 1
    near_now(saved.created_at)
    assert saved.updated_at == saved.created_at
    assert (saved.resumed_at, saved.last_fire_time, saved.last_task_id) == (None, None, None)
    assert await store.get("nightly-report") == saved


async def test_every_field_round_trips(store: Any) -> None:
    wanted = Schedule(
        name="etl.load_v2",
        spec="*/15 9-17 * * mon-fri",
        timezone="Europe/Berlin",
        factory="etl",
        payload={"date": "today", "nested": {"ünïcode": [1, 2.5, None, True]}},
        paused=True,
        durable=False,
        overlap_policy=OverlapPolicy.REPLACE,
        misfire_grace_seconds=120,
        catch_up=CatchUp.LATEST,
    )
    saved, _ = await store.upsert(wanted)
    got = await store.get("etl.load_v2")

    assert got == saved
    user_fields = [f.name for f in dataclasses.fields(Schedule)][:10]
    assert {f: getattr(got, f) for f in user_fields} == {f: getattr(wanted, f) for f in user_fields}


async def test_saving_again_replaces_the_definition_and_keeps_the_runtime_state(store: Any) -> None:
    first, _ = await store.upsert(nightly())
    fired_at = datetime(2030, 1, 1, 3, tzinfo=UTC)
    assert await store.record_firing("nightly-report", fire_time=fired_at, task_id=42)

    second, created = await store.upsert(nightly(spec="0 4 * * *", payload={"a": 1}))

    assert not created
    assert second.revision == 2
    assert (second.spec, second.payload) == ("0 4 * * *", {"a": 1})
    assert second.created_at == first.created_at
    assert second.updated_at is not None
    assert first.updated_at is not None
    assert second.updated_at >= first.updated_at
    assert (second.last_fire_time, second.last_task_id) == (fired_at, 42)


async def test_a_deleted_schedule_is_gone_and_starts_over_when_saved_again(store: Any) -> None:
    await store.upsert(nightly())
    await store.upsert(nightly())

    assert await store.delete("nightly-report")
    assert await store.get("nightly-report") is None
    assert not await store.delete("nightly-report")
    saved, created = await store.upsert(nightly())
    assert created
    assert saved.revision == 1


@pytest.mark.parametrize(
    ("overrides", "field_name"),
    [
        ({"name": "has space"}, "name"),
        ({"name": "has:colon"}, "name"),
        ({"factory": "bad factory"}, "factory"),
        ({"spec": ""}, "spec"),
        ({"timezone": ""}, "timezone"),
        ({"overlap_policy": "sometimes"}, "overlap_policy"),
        ({"catch_up": "all"}, "catch_up"),
        ({"misfire_grace_seconds": -1}, "misfire_grace_seconds"),
        ({"payload": ["not", "an", "object"]}, "payload"),
        ({"payload": {"x": float("nan")}}, "payload"),
    ],
)
def test_a_schedule_breaking_a_storage_rule_names_the_field(
    overrides: dict[str, Any], field_name: str
) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        nightly(**overrides)
    assert caught.value.field == field_name


async def test_schedules_are_listed_by_name_with_the_total(store: Any) -> None:
    for name in ("charlie", "alpha", "bravo", "delta"):
        await store.upsert(nightly(name=name))

    page = await store.list_schedules(limit=2, offset=1)
    assert [s.name for s in page.items] == ["bravo", "charlie"]
    assert page.total == 4
    assert [s.name for s in await store.list_all()] == ["alpha", "bravo", "charlie", "delta"]
    with pytest.raises(InvalidSchedule):
        await store.list_schedules(limit=-1, offset=0)


async def test_schedules_survive_a_restart(
    schedule_stores: ScheduleStoreFactory, store: Any
) -> None:
    saved, _ = await store.upsert(nightly(paused=True, payload={"keep": "me"}))
    await store.set_all_paused(True)
    await schedule_stores.close(store)

    reopened = await schedule_stores.open()
    assert await reopened.get("nightly-report") == saved
    assert (await reopened.state()).all_paused


# --- pausing --------------------------------------------------------------------------------


async def test_pausing_and_resuming_one_schedule(store: Any) -> None:
    await store.upsert(nightly())

    paused = await store.set_paused("nightly-report", True)
    assert paused.paused
    assert paused.resumed_at is None
    assert paused.revision == 1, "pausing is not a new revision of the definition"

    resumed = await store.set_paused("nightly-report", False)
    assert not resumed.paused
    near_now(resumed.resumed_at)

    again = await store.set_paused("nightly-report", False)
    assert again.resumed_at == resumed.resumed_at, "resuming a running schedule is a no-op"
    with pytest.raises(ScheduleNotFound):
        await store.set_paused("missing", True)


async def test_saving_a_paused_schedule_as_running_resumes_it(store: Any) -> None:
    await store.upsert(nightly(paused=True))
    saved, _ = await store.upsert(nightly(paused=False))
    assert not saved.paused
    near_now(saved.resumed_at)


async def test_pause_all_is_a_switch_of_its_own(store: Any) -> None:
    await store.upsert(nightly())
    initial = await store.state()
    assert not initial.all_paused
    assert initial.all_resumed_at is None

    paused = await store.set_all_paused(True)
    assert paused.all_paused
    assert paused.all_resumed_at is None
    assert not (await store.get("nightly-report")).paused, "schedules keep their own flag"

    resumed = await store.set_all_paused(False)
    assert not resumed.all_paused
    near_now(resumed.all_resumed_at)


# --- firings --------------------------------------------------------------------------------


async def test_recording_firings_moves_the_last_fire_time_forwards_only(store: Any) -> None:
    await store.upsert(nightly())
    late = datetime(2030, 1, 2, 3, tzinfo=UTC)
    early = late - timedelta(days=1)

    assert await store.record_firing("nightly-report", fire_time=late, task_id=7)
    assert await store.record_firing("nightly-report", fire_time=early, task_id=None)
    got = await store.get("nightly-report")
    assert (got.last_fire_time, got.last_task_id) == (late, 7)

    # A manual run: a task but no tick.
    assert await store.record_firing("nightly-report", fire_time=None, task_id=8)
    got = await store.get("nightly-report")
    assert (got.last_fire_time, got.last_task_id) == (late, 8)

    assert not await store.record_firing("missing", fire_time=late, task_id=1)
    with pytest.raises(InvalidSchedule):
        await store.record_firing("nightly-report", fire_time=datetime(2030, 1, 1), task_id=1)


async def test_recording_many_firings_at_once_combines_them_per_schedule(store: Any) -> None:
    await store.upsert(nightly())
    await store.upsert(nightly(name="hourly"))
    late = datetime(2030, 1, 2, 3, tzinfo=UTC)
    early = late - timedelta(days=1)
    assert await store.record_firing("hourly", fire_time=late, task_id=3)

    recorded = await store.record_firings(
        [
            FiringRecord(name="nightly-report", fire_time=early, task_id=7),
            FiringRecord(name="missing", fire_time=late, task_id=1),
            FiringRecord(name="nightly-report", fire_time=late, task_id=None),
            FiringRecord(name="hourly", fire_time=early, task_id=None),
            FiringRecord(name="nightly-report", fire_time=None, task_id=9),
        ]
    )

    assert recorded == {"nightly-report", "hourly"}
    got = await store.get("nightly-report")
    assert (got.last_fire_time, got.last_task_id) == (late, 9)
    got = await store.get("hourly")  # forwards only; no task id leaves it alone
    assert (got.last_fire_time, got.last_task_id) == (late, 3)
    assert await store.record_firings([]) == set()
    with pytest.raises(InvalidSchedule):
        await store.record_firings([FiringRecord(name="hourly", fire_time=datetime(2030, 1, 1))])


async def test_recording_many_firings_is_not_a_change(store: Any) -> None:
    await store.upsert(nightly())
    before = await store.state()
    await store.record_firings([FiringRecord(name="nightly-report", fire_time=datetime.now(UTC))])
    assert (await store.state()).version == before.version


async def test_last_tasks_reads_the_latest_task_of_each_schedule_with_its_state(
    schedule_stores: ScheduleStoreFactory, store: Any
) -> None:
    db = next(opened_db for opened, opened_db in schedule_stores._open if opened is store)
    if schedule_stores.backend == "sqlite":
        from store.queue.sqlite import SqliteTaskQueue

        queue: Any = SqliteTaskQueue(db)
    else:
        from store.queue.postgres import PostgresTaskQueue

        queue = PostgresTaskQueue(db)
    for name in ("a", "b", "c", "d"):
        await store.upsert(nightly(name=name))
    ready = (await queue.enqueue(NewTask(handler="noop"))).task
    later = (
        await queue.enqueue(NewTask(handler="noop", run_at=datetime.now(UTC) + timedelta(hours=1)))
    ).task
    await store.record_firings(
        [
            FiringRecord(name="a", task_id=ready.id),
            FiringRecord(name="b", task_id=later.id),
            FiringRecord(name="c", task_id=ready.id + later.id + 1000),  # gone from the queue
        ]
    )

    found = await store.last_tasks(["a", "b", "c", "d", "missing"])

    assert {name: (t.task_id, t.state) for name, t in found.items()} == {
        "a": (ready.id, TaskState.READY),
        "b": (later.id, TaskState.SCHEDULED),
    }
    assert await store.last_tasks([]) == {}


# --- changes --------------------------------------------------------------------------------


async def test_every_change_increments_the_version_and_firings_do_not(store: Any) -> None:
    versions = [(await store.state()).version]

    async def changed() -> None:
        versions.append((await store.state()).version)
        assert versions[-1] > versions[-2]

    await store.upsert(nightly())
    await changed()
    await store.upsert(nightly(spec="0 4 * * *"))
    await changed()
    await store.set_paused("nightly-report", True)
    await changed()
    await store.set_all_paused(True)
    await changed()
    await store.delete("nightly-report")
    await changed()

    await store.upsert(nightly())
    before = (await store.state()).version
    await store.record_firing("nightly-report", fire_time=datetime.now(UTC), task_id=1)
    assert not await store.delete("missing")
    assert (await store.state()).version == before


async def test_a_change_wakes_a_waiter_of_the_same_store(store: Any) -> None:
    await store.wait_for_change(0.2)  # the first call may return at once (listener opened)
    waiter = asyncio.create_task(store.wait_for_change(10))
    await asyncio.sleep(0.1)
    await store.upsert(nightly())
    await asyncio.wait_for(waiter, timeout=2)


@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_change_wakes_a_waiter_in_another_process_on_postgres(
    schedule_stores: ScheduleStoreFactory, store: Any
) -> None:
    other = await schedule_stores.open()
    await other.wait_for_change(0.5)  # opens the LISTEN connection
    waiter = asyncio.create_task(other.wait_for_change(10))
    await asyncio.sleep(0.1)
    started = asyncio.get_running_loop().time()
    await store.set_all_paused(True)
    await asyncio.wait_for(waiter, timeout=5)
    assert asyncio.get_running_loop().time() - started < 2


async def test_another_store_sees_changes_by_polling_the_version(
    schedule_stores: ScheduleStoreFactory, store: Any
) -> None:
    other = await schedule_stores.open()
    seen = (await other.state()).version
    await store.upsert(nightly())
    assert (await other.state()).version > seen
    assert await other.get("nightly-report") is not None


# --- leadership -----------------------------------------------------------------------------


async def test_one_leader_at_a_time(schedule_stores: ScheduleStoreFactory, store: Any) -> None:
    other = await schedule_stores.open()
    first, second = store.leader_lock(), other.leader_lock()
    try:
        assert await first.try_acquire()
        assert await first.try_acquire(), "acquiring again while holding is a yes"
        assert not await second.try_acquire()
        assert await first.still_held()
        assert not await second.still_held()

        await first.release()
        assert not await first.still_held()
        assert await second.try_acquire()
        assert not await first.try_acquire()
    finally:
        await first.release()
        await second.release()
        await second.release()  # idempotent


async def test_every_store_on_the_database_names_the_leader(
    schedule_stores: ScheduleStoreFactory, store: Any
) -> None:
    other = await schedule_stores.open()
    assert await store.leader() is None
    first, second = store.leader_lock("host-a:101"), other.leader_lock("host-b:202")
    try:
        assert await first.try_acquire()
        assert await store.leader() == await other.leader() == "host-a:101"
        assert not await second.try_acquire()
        await first.release()
        assert await other.leader() is None
        assert await second.try_acquire()
        assert await store.leader() == "host-b:202"
    finally:
        await first.release()
        await second.release()
    assert await store.leader() is None


async def test_two_locks_on_one_store_exclude_each_other(store: Any) -> None:
    first, second = store.leader_lock(), store.leader_lock()
    try:
        assert await first.try_acquire()
        assert not await second.try_acquire()
    finally:
        await first.release()
        await second.release()

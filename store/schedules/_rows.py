"""Conversions between database rows and the schedule store's value objects, for both
backends. SQLite keeps times as epoch microseconds, booleans as 0/1 and the payload as JSON
text; asyncpg hands back aware datetimes, booleans and decoded jsonb (see
:mod:`store.db.postgres`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from store.queue._sqlite_rows import from_us, maybe_from_us, to_us
from store.schedules.models import CatchUp, OverlapPolicy, Schedule, SchedulesState


class Row(Protocol):
    """A result row of either driver (``sqlite3.Row``, ``asyncpg.Record``): columns by name."""

    def __getitem__(self, key: str, /) -> Any: ...


def sqlite_params(schedule: Schedule, now: int) -> dict[str, Any]:
    """Parameters of the SQLite ``upsert_schedule``."""
    return {
        "name": schedule.name,
        "spec": schedule.spec,
        "timezone": schedule.timezone,
        "factory": schedule.factory,
        "payload": schedule.payload_json,
        "paused": int(schedule.paused),
        "durable": int(schedule.durable),
        "overlap_policy": schedule.overlap_policy.value,
        "misfire_grace_seconds": schedule.misfire_grace_seconds,
        "catch_up": schedule.catch_up.value,
        "now": now,
    }


def postgres_args(schedule: Schedule) -> list[Any]:
    """Parameters $1-$10 of the PostgreSQL ``upsert_schedule``."""
    return [
        schedule.name,
        schedule.spec,
        schedule.timezone,
        schedule.factory,
        schedule.payload_json,
        schedule.paused,
        schedule.durable,
        schedule.overlap_policy.value,
        schedule.misfire_grace_seconds,
        schedule.catch_up.value,
    ]


def maybe_to_us(moment: datetime | None) -> int | None:
    return None if moment is None else to_us(moment)


def _identity(value: Any) -> Any:
    return value


def _schedule(row: Row, time: Callable[[Any], Any], payload: Callable[[Any], Any]) -> Schedule:
    return Schedule(
        name=row["name"],
        spec=row["spec"],
        timezone=row["timezone"],
        factory=row["factory"],
        payload=payload(row["payload"]),
        paused=bool(row["paused"]),
        durable=bool(row["durable"]),
        overlap_policy=OverlapPolicy(row["overlap_policy"]),
        misfire_grace_seconds=int(row["misfire_grace_seconds"]),
        catch_up=CatchUp(row["catch_up"]),
        revision=int(row["revision"]),
        created_at=time(row["created_at"]),
        updated_at=time(row["updated_at"]),
        resumed_at=time(row["resumed_at"]),
        last_fire_time=time(row["last_fire_time"]),
        last_task_id=row["last_task_id"],
    )


def schedule_from_sqlite(row: Row) -> Schedule:
    return _schedule(row, maybe_from_us, json.loads)


def schedule_from_postgres(row: Row) -> Schedule:
    return _schedule(row, _identity, _identity)


def state_from_sqlite(row: Row) -> SchedulesState:
    return SchedulesState(
        version=int(row["version"]),
        all_paused=bool(row["all_paused"]),
        all_resumed_at=maybe_from_us(row["all_resumed_at"]),
    )


def state_from_postgres(row: Row) -> SchedulesState:
    return SchedulesState(
        version=int(row["version"]),
        all_paused=bool(row["all_paused"]),
        all_resumed_at=row["all_resumed_at"],
    )


__all__ = [
    "from_us",
    "maybe_to_us",
    "postgres_args",
    "schedule_from_postgres",
    "schedule_from_sqlite",
    "sqlite_params",
    "state_from_postgres",
    "state_from_sqlite",
]

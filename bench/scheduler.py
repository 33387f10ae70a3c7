"""Scheduler benchmark: tick lateness, missed and duplicate ticks, idle CPU.

    python -m bench.scheduler --database-url postgresql://... [--schedules N] [--seconds S]
                              [--idle-schedules N] [--idle-seconds S] [--json]

What it measures (see docs/benchmarks.md, "Scheduler"):

- **firing**: ``--schedules`` (1,000) schedules, each ``* * * * * *`` (every second) on the
  ``builtin.noop`` handler factory, are saved through the ``ScheduleManager``; one
  :class:`scheduler.service.SchedulerService` (as ``longshore serve`` builds it: the
  PostgreSQL store, a ``FileEventStore`` with the default durability for schedule events)
  becomes leader and fires for a warm-up and then a ``--seconds`` (30) window. No worker
  runs: the tasks stay ready. Afterwards, for the ticks in the window:
  ``lateness_p50_ms`` / ``lateness_p99_ms`` / ``lateness_max_ms`` = the task's
  ``created_at`` (set by PostgreSQL at enqueue) minus the fire time written in its key;
  ``missed_ticks`` = schedules x seconds - distinct keys; ``duplicate_ticks`` = tasks per key
  beyond the first (the unique key makes it 0 by construction), plus
  ``duplicate_fired_events`` = ``ScheduleFired`` events per key beyond the first.
- **idle CPU**: on a second fresh database, ``--idle-schedules`` (10,000) schedules, half
  paused, half hourly at a minute away from now; once the scheduler leads and has synced,
  ``idle_cpu_percent`` = this process's CPU time over ``--idle-seconds`` (30) divided by
  the wall time, as a percentage of one core (the process runs only the scheduler, its
  store and the event store).

Every phase gets a fresh PostgreSQL database ``bench_sched_<random>`` on the server named by
``--database-url``, dropped afterwards. With ``--json`` only one JSON object goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.queue import fresh_postgres_database
from scheduler.factories import FactoryRegistry, handler_factory
from scheduler.firing import SCHEDULE_SKIPPED
from scheduler.manager import ScheduleManager
from scheduler.service import SchedulerService
from service.backends import Stores, open_store
from service.logs import configure_logging
from service.runtime import event_store_options, settle_heap
from service.settings import load_settings
from store.events.file import FileEventStore
from store.events.models import EventType, Stream
from store.schedules.models import Schedule

logger = logging.getLogger("bench.scheduler")

HANDLER = "builtin.noop"
TARGETS = {
    "lateness_p99_ms": ("<=", 100.0),
    "missed_ticks": ("<=", 0),
    "duplicate_ticks": ("<=", 0),
    "idle_cpu_percent": ("<=", 2.0),
}


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def parse_fire_time(key: str) -> datetime:
    """``schedule:<name>:<ISO UTC>`` → the fire time."""
    stamp = key.split(":", 2)[2]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def _create(manager: ScheduleManager, schedules: Sequence[Schedule]) -> None:
    batch = 50
    for start in range(0, len(schedules), batch):
        await asyncio.gather(*(manager.save(s) for s in schedules[start : start + batch]))


async def _wait_leading(scheduler: SchedulerService, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not scheduler.is_leader:
        if time.monotonic() > deadline:
            raise RuntimeError("the scheduler did not become leader")
        await asyncio.sleep(0.05)


class _Phase:
    """A fresh database, its stores, an event store and a scheduler wired as ``serve`` does."""

    def __init__(self, url: str, work: Path, *, durability: str = "always") -> None:
        self.settings = load_settings(
            {},
            database_url=url,
            data_dir=work,
            concurrency=32,
            log_level="WARNING",
            job_event_durability="always" if durability == "off" else durability,
        )
        self.events_on = durability != "off"
        self.factories = FactoryRegistry()
        self.factories.register(handler_factory(HANDLER))


async def firing_phase(
    server_url: str, schedules: int, seconds: int, durability: str = "always"
) -> dict[str, Any]:
    async with fresh_postgres_database(server_url, prefix="bench_sched") as url:
        with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmp:
            phase = _Phase(url, Path(tmp), durability=durability)
            async with open_store(phase.settings) as stores:
                events = await FileEventStore.open(event_store_options(phase.settings))
                try:
                    return await _fire(phase, stores, events, schedules, seconds)
                finally:
                    await events.close()


async def _fire(
    phase: _Phase, stores: Stores, events: FileEventStore, schedules: int, seconds: int
) -> dict[str, Any]:
    manager = ScheduleManager(
        store=stores.schedules, queue=stores.queue, factories=phase.factories, events=events
    )
    names = [f"bench-{i:05d}" for i in range(schedules)]
    started = time.perf_counter()
    await _create(
        manager, [Schedule(name=name, spec="* * * * * *", factory=HANDLER) for name in names]
    )
    create_s = time.perf_counter() - started
    scheduler = SchedulerService(
        store=stores.schedules,
        queue=stores.queue,
        factories=phase.factories,
        events=events if phase.events_on else None,
    )
    cpu_start = time.process_time()
    async with scheduler:
        await _wait_leading(scheduler)
        settle_heap()  # as `longshore serve` does once it runs
        # Warm-up: the first sync and timers; the window starts on a whole second after it.
        await asyncio.sleep(3.0)
        now = datetime.now(UTC)
        window_start = now.replace(microsecond=0) + timedelta(seconds=1)
        window_end = window_start + timedelta(seconds=seconds)
        wall_start = time.perf_counter()
        delay = (window_end - datetime.now(UTC)).total_seconds() + 3.0  # let the last finish
        await asyncio.sleep(delay)
        wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start

    assert phase.settings.database_url is not None
    rows = await _task_rows(phase.settings.database_url)
    lateness: list[float] = []
    per_key: Counter[str] = Counter()
    for key, created_at in rows:
        fire = parse_fire_time(key)
        if window_start <= fire < window_end:
            per_key[key] += 1
            lateness.append((created_at - fire).total_seconds() * 1000)
    expected = schedules * seconds
    fired_keys: Counter[str] = Counter()
    for name in names:
        for event in await events.latest(Stream.SCHEDULES, name, seconds + 100):
            if event.type == EventType.SCHEDULE_FIRED:
                key = str(event.data.get("key", ""))
                if key and window_start <= parse_fire_time(key) < window_end:
                    fired_keys[key] += 1
    skipped = 0
    for name in names[:50]:  # a sample: skip reasons if any ticks were missed
        for event in await events.latest(Stream.SCHEDULES, name, seconds + 100):
            if event.type == SCHEDULE_SKIPPED:
                skipped += 1
    return {
        "schedule_events": phase.settings.job_event_durability if phase.events_on else "off",
        "schedules": schedules,
        "window_seconds": seconds,
        "expected_ticks": expected,
        "enqueued_ticks": len(per_key),
        "lateness_p50_ms": round(percentile(lateness, 50), 2),
        "lateness_p99_ms": round(percentile(lateness, 99), 2),
        "lateness_max_ms": round(max(lateness, default=float("nan")), 2),
        "missed_ticks": expected - len(per_key),
        "duplicate_ticks": sum(count - 1 for count in per_key.values()),
        "duplicate_fired_events": sum(count - 1 for count in fired_keys.values()),
        "skip_events_in_first_50_schedules": skipped,
        "firing_cpu_percent": round(100 * cpu / max(wall, 1e-9), 1),
        "create_schedules_s": round(create_s, 2),
    }


async def _task_rows(url: str) -> list[tuple[str, datetime]]:
    """Every tick's task, read straight from the table (a benchmark may)."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        records = await connection.fetch(
            "SELECT key, created_at FROM tasks"
            " WHERE key LIKE 'schedule:%' AND key NOT LIKE '%:manual:%'"
        )
    finally:
        await connection.close()
    return [(str(r["key"]), r["created_at"]) for r in records]


async def idle_phase(server_url: str, schedules: int, seconds: int) -> dict[str, Any]:
    async with fresh_postgres_database(server_url, prefix="bench_sched") as url:
        with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmp:
            phase = _Phase(url, Path(tmp))
            async with open_store(phase.settings) as stores:
                events = await FileEventStore.open(event_store_options(phase.settings))
                try:
                    return await _idle(phase, stores, events, schedules, seconds)
                finally:
                    await events.close()


async def _idle(
    phase: _Phase, stores: Stores, events: FileEventStore, schedules: int, seconds: int
) -> dict[str, Any]:
    manager = ScheduleManager(
        store=stores.schedules, queue=stores.queue, factories=phase.factories, events=events
    )
    minute = (datetime.now(UTC).minute + 30) % 60
    batch = [
        Schedule(
            name=f"idle-{i:05d}",
            spec=f"{minute} * * * *",
            factory=HANDLER,
            paused=i % 2 == 0,
        )
        for i in range(schedules)
    ]
    started = time.perf_counter()
    await _create(manager, batch)
    create_s = time.perf_counter() - started
    scheduler = SchedulerService(
        store=stores.schedules, queue=stores.queue, factories=phase.factories, events=events
    )
    async with scheduler:
        await _wait_leading(scheduler)
        await asyncio.sleep(5.0)  # the initial sync of all timers is not idle time
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    return {
        "idle_schedules": schedules,
        "idle_paused": sum(1 for s in batch if s.paused),
        "idle_hourly_minute": minute,
        "idle_seconds": round(wall, 2),
        "idle_cpu_percent": round(100 * cpu / wall, 3),
        "idle_create_schedules_s": round(create_s, 2),
    }


def _check(result: dict[str, Any]) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, (op, bound) in TARGETS.items():
        value = result.get(key)
        if value is None:
            continue
        met = value <= bound if op == "<=" else value >= bound
        checked[key] = {"target": f"{op} {bound:g}", "value": value, "met": met}
    return checked


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "scheduler",
        "backend": "postgres",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        # The machine may be shared: the 1/5/15-minute load averages before and after.
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    if args.schedules:
        result.update(
            await firing_phase(
                args.database_url, args.schedules, args.seconds, args.event_durability
            )
        )
    if args.idle_schedules:
        result.update(await idle_phase(args.database_url, args.idle_schedules, args.idle_seconds))
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = _check(result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scheduler",
        description="Scheduler lateness, missed/duplicate ticks and idle CPU on PostgreSQL.",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("WORKER_DATABASE_URL"),
        help="PostgreSQL server (a fresh database is created on it and dropped afterwards).",
    )
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--idle-schedules", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=int, default=30)
    parser.add_argument(
        "--event-durability",
        choices=["always", "interval", "none", "off"],
        default="always",
        help="Durability of the schedule events while firing (off: no event store; "
        "for diagnosis). Default: always, as WORKER_JOB_EVENT_DURABILITY's default.",
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON object only.")
    args = parser.parse_args(argv)
    if not args.database_url or not args.database_url.startswith(("postgresql:", "postgres:")):
        parser.error("--database-url must name a PostgreSQL server")
    configure_logging("WARNING", "text")
    result = asyncio.run(run(args))
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Missed runs across a crash: ``longshore serve`` killed with SIGKILL through a schedule's
firings and started again records exactly one ``ScheduleMissed`` per firing nobody enqueued,
none for a paused schedule, and the ``missed`` rule's receiver on loopback is told of each,
signed."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler.spec import next_fire_time, parse_spec, parse_timezone
from store.events import EventFilter, EventStoreOptions, FileEventStore, Stream
from tests.acceptance.conftest import Longshore, wait_until
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening
from tests.integration.webhook_receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

SPEC = "*/2 * * * * *"
SECRET = "missed-cli-secret-77aa"


def schedule_events(event_dir: Path) -> list[Any]:
    async def read() -> list[Any]:
        store = await FileEventStore.open(
            EventStoreOptions(directory=event_dir, retention={}, poll_interval=0.05)
        )
        try:
            return list(
                await store.since(0, EventFilter(streams=frozenset({Stream.SCHEDULES})), 10_000)
            )
        finally:
            await store.close()

    return asyncio.run(read())


def at(event: Any) -> datetime:
    return datetime.fromisoformat(str(event.data["scheduledAt"]).replace("Z", "+00:00"))


def test_a_killed_leader_restarted_records_one_missed_per_missed_firing(
    longshore: Longshore, tmp_path: Path
) -> None:
    receiver = Receiver.reserve().start()
    port = free_port()
    api = {
        "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
        "WORKER_ADMIN_TOKEN": "root:adm1n-0123456789-abcdefgh",
        "WORKER_ADMIN_ROLES": "root=admin",
        "WORKER_DURABLE_CRON_HANDLERS": "builtin.noop",
        "WORKER_NOTIFY_RETRY_SECONDS": "0.2",
    }
    longshore.env.update(api)
    event_dir = tmp_path / "data" / "events"
    secret_file = tmp_path / "hook.key"
    secret_file.write_text(SECRET)
    try:
        first = start_serve(longshore, "serve-1", api)
        wait_listening(first, port)
        for name, extra in (("every2", ["--misfire-grace", "1"]), ("paused2", ["--paused"])):
            longshore.ok(
                "schedules", "create", name, "--spec", SPEC, "--factory", "builtin.noop", *extra
            )
        longshore.ok(
            "notifications", "set", "missed-hook", "--event", "missed",
            "--url", receiver.url("/missed"), "--secret-file", str(secret_file),
        )  # fmt: skip

        def fired(name: str, after: datetime | None = None) -> list[datetime]:
            return [
                at(event)
                for event in schedule_events(event_dir)
                if event.key == name
                and event.type == "ScheduleFired"
                and (after is None or at(event) > after)
            ]

        wait_until(lambda: bool(fired("every2")), "a firing of every2", timeout=30)
        # Kill half-way between two ticks (they fall on even seconds), not during one.
        while not (datetime.now(UTC).second % 2 == 1 and datetime.now(UTC).microsecond < 3e5):
            time.sleep(0.02)
        first.signal(signal.SIGKILL)
        first.wait(timeout=30)
        before = max(fired("every2"))
        time.sleep(5)

        second = start_serve(longshore, "serve-2", api)
        try:
            wait_listening(second, port)
            wait_until(lambda: bool(fired("every2", before)), "a firing after the restart")
            resumed = min(fired("every2", before))
            spec, zone = parse_spec(SPEC), parse_timezone("UTC")
            expected: list[datetime] = []
            moment = next_fire_time(spec, before, zone)
            while moment is not None and moment < resumed:
                expected.append(moment)
                moment = next_fire_time(spec, moment, zone)
            assert len(expected) >= 2
            wait_until(
                lambda: len(receiver.at("/missed")) >= len(expected),
                "the missed notifications",
                timeout=30,
            )
            time.sleep(1)  # nothing more arrives
        finally:
            stop(second)

        events = schedule_events(event_dir)
        missed = [event for event in events if event.type == "ScheduleMissed"]
        assert sorted(at(event) for event in missed if event.key == "every2") == expected
        assert [event for event in missed if event.key == "paused2"] == []
        notes = receiver.at("/missed")
        assert len(notes) == len(expected)
        assert all(note.signed_by(SECRET) for note in notes)
        assert (
            sorted(datetime.fromisoformat(note.json()["subject"]["scheduledAt"]) for note in notes)
            == expected
        )
    finally:
        receiver.stop()

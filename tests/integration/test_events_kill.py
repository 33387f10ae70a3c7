"""A writer process killed with ``kill -9`` loses no acknowledged event.

The child appends in a loop from several tasks (default durability, small segments so that
it rolls over while it runs) and prints each id once ``append`` returned. After
``SIGKILL`` the parent also leaves a torn line at the end of the active segment, as a write
cut short would, then reopens the store: every acknowledged id is there exactly once, the
torn tail is not an event, and new ids continue above everything seen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from store.events import EventStoreOptions, EventType, FileEventStore, NewEvent, Stream

ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from store.events import EventStoreOptions, FileEventStore, NewEvent

    async def main() -> None:
        store = await FileEventStore.open(
            EventStoreOptions(directory=Path(sys.argv[1]), segment_bytes=64 * 1024)
        )

        async def writer(number: int) -> None:
            i = 0
            while True:
                event = await store.append(
                    NewEvent.run("RunOutputEmitted", job=f"job-{number}", run_id=f"run-{number}",
                                 line=f"line {i} of writer {number}")
                )
                sys.stdout.write(f"{event.id}\\n")
                sys.stdout.flush()
                i += 1

        await asyncio.gather(*(writer(n) for n in range(8)))

    asyncio.run(main())
    """
)


def acknowledged_ids_until_killed(directory: Path, at_least: int) -> list[int]:
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ids: list[int] = []
    assert child.stdout is not None
    deadline = time.monotonic() + 60
    try:
        while len(ids) < at_least:
            line = child.stdout.readline()
            if not line:
                stderr = child.stderr.read() if child.stderr else ""
                pytest.fail(f"the writer stopped early: {stderr}")
            ids.append(int(line))
            assert time.monotonic() < deadline, "the writer is too slow"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        # Ids printed before the kill landed are acknowledged too.
        rest, _ = child.communicate(timeout=30)
    ids.extend(int(line) for line in rest.split())
    assert child.returncode == -signal.SIGKILL
    return ids


@pytest.mark.slow
async def test_a_killed_writer_loses_no_acknowledged_event(tmp_path: Path) -> None:
    directory = tmp_path / "events"
    acknowledged = acknowledged_ids_until_killed(directory, 3_000)
    assert len(set(acknowledged)) == len(acknowledged)

    active = sorted((directory / "runs").glob("*.jsonl"))[-1]
    assert len(list((directory / "runs").glob("*.jsonl"))) > 1  # it rolled over meanwhile
    with open(active, "ab") as handle:
        handle.write(b'{"id":999999999,"atMs":1,"key":"job-1","type":"RunOutputEm')

    store = await FileEventStore.open(EventStoreOptions(directory=directory))
    try:
        stored = await store.since(0, limit=1_000_000)
        ids = [e.id for e in stored]
        assert len(ids) == len(set(ids))
        assert ids == sorted(ids)
        missing = set(acknowledged) - set(ids)
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
        assert 999_999_999 not in ids
        for writer in range(8):
            lines = [e.data["line"] for e in stored if e.key == f"job-{writer}"]
            numbers = [int(text.split()[1]) for text in lines]
            assert numbers == list(range(len(numbers)))  # each writer's events in order
        new = await store.append(NewEvent.run(EventType.RUN_QUEUED, job="job-0", run_id="after"))
        assert new.id > max(ids) >= max(acknowledged)
        assert (await store.latest(Stream.RUNS, "job-0", 1))[0].id == new.id
    finally:
        await store.close()
    assert not active.read_bytes().endswith(b"RunOutputEm")

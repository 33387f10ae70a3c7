"""Scheduler instances as separate processes on one PostgreSQL: however many run, every
tick is enqueued exactly once, and when the leader is killed another takes over."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from store.queue.models import TaskFilter
from store.schedules.models import Schedule
from tests.conftest import ROOT
from tests.integration.scheduler_instance import TICK_FACTORY, open_stack

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@contextmanager
def instances(url: str, status_dir: Path, count: int) -> Iterator[list[subprocess.Popen[str]]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.scheduler_instance",
                "postgres",
                url,
                f"i{n}",
                str(status_dir),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "started"
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def leaders(status_dir: Path) -> list[str]:
    return sorted(p.stem for p in status_dir.glob("*.leader"))


async def wait_for_leader(status_dir: Path, timeout: float, not_: str | None = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [name for name in leaders(status_dir) if name != not_]
        if len(found) == 1:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no single leader within {timeout}s: {leaders(status_dir)}")


def fire_times(keys: list[str]) -> list[datetime]:
    return sorted(
        datetime.fromisoformat(key.removeprefix("schedule:pulse:").replace("Z", "+00:00"))
        for key in keys
    )


async def tick_keys(url: str) -> list[str]:
    async with open_stack("postgres", url) as stack:
        page = await stack.queue.list_tasks(TaskFilter(handler=TICK_FACTORY), limit=10000, offset=0)
        return [t.key for t in page.items]


async def create_pulse(url: str) -> None:
    async with open_stack("postgres", url) as stack:
        await stack.store.upsert(Schedule(name="pulse", spec="* * * * * *", factory=TICK_FACTORY))


async def test_three_instances_enqueue_every_tick_exactly_once(
    postgres_database_url: str, tmp_path: Path
) -> None:
    await create_pulse(postgres_database_url)
    with instances(postgres_database_url, tmp_path, 3):
        await wait_for_leader(tmp_path, 10)
        started = datetime.now(UTC)
        await asyncio.sleep(12)
        stopped = datetime.now(UTC)
        assert len(leaders(tmp_path)) == 1
    keys = await tick_keys(postgres_database_url)
    assert len(keys) == len(set(keys))
    times = fire_times(keys)
    window = [
        t for t in times if started + timedelta(seconds=1) <= t <= stopped - timedelta(seconds=1)
    ]
    expected = int((stopped - started).total_seconds()) - 2
    assert len(window) >= expected, f"ticks were missed: {len(window)} of {expected}"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap == timedelta(seconds=1) for gap in gaps), "every second, once, no gaps"


async def test_killing_the_leader_hands_over_within_five_seconds(
    postgres_database_url: str, tmp_path: Path
) -> None:
    await create_pulse(postgres_database_url)
    with instances(postgres_database_url, tmp_path, 3) as procs:
        leader = await wait_for_leader(tmp_path, 10)
        await asyncio.sleep(1.5)
        procs[int(leader.removeprefix("i"))].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        (tmp_path / f"{leader}.leader").unlink()
        successor = await wait_for_leader(tmp_path, 5, not_=leader)
        took = time.monotonic() - killed_at
        assert successor != leader
        assert took < 5, f"take-over took {took:.1f}s"
        after_takeover = datetime.now(UTC)
        await asyncio.sleep(2.5)
    keys = await tick_keys(postgres_database_url)
    assert len(keys) == len(set(keys))
    assert any(t > after_takeover for t in fire_times(keys)), "the new leader fires"

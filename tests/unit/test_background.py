"""The task owner: every background task named, its failure logged, awaited on shutdown."""

from __future__ import annotations

import asyncio
import logging

import pytest

from store.background import TaskOwner


async def test_closing_the_owner_cancels_and_awaits_every_running_task() -> None:
    ended: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    owner = TaskOwner("test")
    first = owner.spawn(forever("a"), name="loop-a")
    second = owner.spawn(forever("b"), name="loop-b")
    await asyncio.sleep(0)
    assert len(owner) == 2
    await owner.close()
    assert sorted(ended) == ["a", "b"]
    assert first.cancelled()
    assert second.cancelled()
    assert len(owner) == 0


async def test_a_failing_task_is_logged_with_its_name_and_does_not_break_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def boom() -> None:
        raise RuntimeError("it broke")

    caplog.set_level(logging.ERROR, logger="store.background")
    async with TaskOwner("test") as owner:
        task = owner.spawn(boom(), name="boom-task")
        await asyncio.wait([task])
    records = [r for r in caplog.records if r.getMessage() == "background task failed"]
    assert len(records) == 1
    assert records[0].__dict__["task"] == "boom-task"
    assert "it broke" in str(records[0].exc_info[1] if records[0].exc_info else "")


async def test_close_without_cancel_waits_for_tasks_to_finish_by_themselves() -> None:
    done = asyncio.Event()

    async def short() -> str:
        await asyncio.sleep(0.05)
        done.set()
        return "ok"

    owner = TaskOwner("test")
    task = owner.spawn(short(), name="short")
    await owner.close(cancel=False)
    assert done.is_set()
    assert task.result() == "ok"


async def test_no_task_starts_after_shutdown() -> None:
    owner = TaskOwner("test")
    await owner.close()

    async def never() -> None:
        raise AssertionError("must not run")

    with pytest.raises(RuntimeError, match="after shutdown"):
        owner.spawn(never(), name="late")

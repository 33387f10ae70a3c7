"""Hooks fire in their documented order for every outcome, a failing hook changes
nothing, and the DLQ cleanup plugin deletes the dead entries of a key that completed."""

from __future__ import annotations

import pytest

import longshore
from longshore import Hook
from tests.integration.library_harness import QUICK, TINY_RETRY, eventually, library_url


@pytest.fixture
async def client(backend, queue_location):
    async with longshore.Client(library_url(backend, queue_location)) as opened:
        yield opened


def recording(registry: longshore.Registry, calls: list[tuple[str, str, int]]) -> None:
    """Register a hook at every task point recording (point, handler, attempt)."""
    for point in Hook:
        if point is Hook.CRON_TICK:
            continue

        async def record(event: longshore.TaskEvent) -> None:
            calls.append((event.hook.value, event.task.handler, event.task.attempts))

        registry.add_hook(point, record)


async def test_hooks_fire_in_order_for_each_outcome(client):
    registry = longshore.Registry()
    calls: list[tuple[str, str, int]] = []
    recording(registry, calls)

    @registry.handler("ok")
    async def ok(payload: dict) -> None: ...

    @registry.handler("declined")
    async def declined(payload: dict) -> None:
        raise longshore.PermanentFailure("no")

    @registry.handler("flaky")
    async def flaky(payload: dict) -> None:
        raise TimeoutError("slow upstream")

    for handler in (ok, declined):
        await client.enqueue(handler, {})
        await longshore.Worker(client, registry, **QUICK).run_until_idle()
    await client.enqueue(flaky, {}, retry=TINY_RETRY)
    async with longshore.Worker(client, registry, **QUICK).running():
        await eventually(lambda: _dead(client, 2))

    assert calls == [
        ("before_run", "ok", 1),
        ("completed", "ok", 1),
        ("after_run", "ok", 1),
        ("before_run", "declined", 1),
        ("permanently_failed", "declined", 1),
        ("dead_lettered", "declined", 1),
        ("after_run", "declined", 1),
        ("before_run", "flaky", 1),
        ("failed", "flaky", 1),
        ("after_run", "flaky", 1),
        ("before_run", "flaky", 2),
        ("failed", "flaky", 2),
        ("after_run", "flaky", 2),
        ("before_run", "flaky", 3),
        ("dead_lettered", "flaky", 3),
        ("after_run", "flaky", 3),
    ]


async def test_hook_events_carry_the_error_and_the_retry_time(client):
    registry = longshore.Registry()
    failures: list[longshore.TaskEvent] = []

    @registry.on("failed")
    async def on_failed(event: longshore.TaskEvent) -> None:
        failures.append(event)

    @registry.handler("flaky")
    async def flaky(payload: dict) -> None:
        raise ConnectionError("refused")

    task = (await client.enqueue(flaky, {}, retry=TINY_RETRY, max_attempts=2)).task
    await longshore.Worker(client, registry, **QUICK).run_until_idle()

    assert len(failures) == 1
    event = failures[0]
    assert (event.task.id, event.error) == (task.id, "ConnectionError: refused")
    assert isinstance(event.exception, ConnectionError)
    assert event.retry_at is not None
    assert event.client is client


async def test_a_failing_hook_changes_nothing(client):
    registry = longshore.Registry()
    later_hooks: list[str] = []
    ran: list[int] = []

    for point in (Hook.BEFORE_RUN, Hook.COMPLETED, Hook.AFTER_RUN):

        @registry.on(point)
        async def broken(event: longshore.TaskEvent) -> None:
            raise RuntimeError(f"hook {event.hook} is broken")

        @registry.on(point)
        async def fine(event: longshore.TaskEvent) -> None:
            later_hooks.append(event.hook.value)

    @registry.handler("work")
    async def work(payload: dict, ctx: longshore.Context) -> None:
        ran.append(ctx.attempt)

    task = (await client.enqueue(work, {}, key="work-1")).task
    await longshore.Worker(client, registry, **QUICK).run_until_idle()

    assert ran == [1], "the handler ran once, the broken before_run hook did not stop it"
    assert later_hooks == ["before_run", "completed", "after_run"]
    done = await client.get(task.id)
    assert done is not None
    assert (done.state, done.last_error) == (longshore.TaskState.DONE, None)
    assert (await client.list_dead()).total == 0


async def test_the_dlq_cleanup_plugin_deletes_dead_entries_of_a_key_that_completed(client):
    registry = longshore.Registry()
    registry.use(longshore.DlqCleanup())
    outcome = {"fail": True}

    @registry.handler("sync_account")
    async def sync_account(payload: dict) -> None:
        if outcome["fail"]:
            raise longshore.PermanentFailure("remote said no")

    first = (await client.enqueue(sync_account, {"id": 1}, key="account-1")).task
    unrelated = (await client.enqueue(sync_account, {"id": 2}, key="account-2")).task
    await longshore.Worker(client, registry, **QUICK).run_until_idle()
    assert {t.id for t in (await client.list_dead()).items} == {first.id, unrelated.id}

    outcome["fail"] = False
    retried = (await client.enqueue(sync_account, {"id": 1}, key="account-1")).task
    assert retried.id != first.id
    await longshore.Worker(client, registry, **QUICK).run_until_idle()

    assert [t.id for t in (await client.list_dead()).items] == [unrelated.id]
    assert await client.get(first.id) is None


async def _dead(client: longshore.Client, expected: int) -> bool:
    return (await client.list_dead()).total == expected

"""The worker over real queues: tasks run, fail, retry, dead-letter, and shut down cleanly.

Every test runs against SQLite and PostgreSQL (the ``queue`` fixture of ``tests/conftest.py``);
the PostgreSQL variants fail, never skip, when no server can be had. Timing bounds are
generous on purpose: these tests prove behaviour, the benchmarks measure speed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from jobrunner.errors import JobRunFailed
from service.builtins import register_builtins
from service.worker import HandlerRegistry, Worker, WorkerOptions
from store.errors import PermanentFailure, StoreUnavailable
from store.queue.handlers import TaskContext
from store.queue.models import NewTask, TaskFilter, TaskState
from store.queue.retry import RetryPolicy
from tests.conftest import only_postgres

# Short enough that tests stay quick, long enough that a loaded machine keeps its leases.
LEASE = timedelta(seconds=5)
# Generous bound for "eventually": a broken feature never gets there, a slow machine does.
EVENTUALLY = 30.0
TINY_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, factor=1.0, max_delay=0.01, jitter=0.0)


def options(**overrides: Any) -> WorkerOptions:
    values: dict[str, Any] = {
        "concurrency": 4,
        "lease": LEASE,
        "heartbeat_interval": 1.0,
        "poll_interval": 0.1,
        "shutdown_grace": 5.0,
        "stale_after": timedelta(seconds=60),
    }
    values.update(overrides)
    return WorkerOptions(**values)


def registry(**handlers: Callable[[TaskContext], Awaitable[None]]) -> HandlerRegistry:
    """The builtins plus ``handlers`` (keyword ``a_b`` registers handler ``test.a_b``)."""
    result = HandlerRegistry()
    register_builtins(result)
    for name, handler in handlers.items():
        result.register(f"test.{name}", handler)
    return result


@dataclass
class RunningWorker:
    worker: Worker
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def stopped(self, timeout: float = EVENTUALLY) -> None:
        """Ask the worker to stop and wait until ``run()`` has returned."""
        self.stop.set()
        await asyncio.wait_for(asyncio.shield(self.task), timeout)


@asynccontextmanager
async def running(queue: Any, handlers: HandlerRegistry, **overrides: Any) -> AsyncIterator[Any]:
    """A worker running in the background; stopped (and checked) when the block ends."""
    worker = Worker(queue, handlers, options(**overrides))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop), name="test-worker")
    handle = RunningWorker(worker=worker, stop=stop, task=task)
    try:
        yield handle
    finally:
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), EVENTUALLY)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    task.result()  # a worker that crashed fails the test


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds, failing after :data:`EVENTUALLY` seconds."""
    deadline = asyncio.get_running_loop().time() + EVENTUALLY
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {EVENTUALLY} s: {what}")
        await asyncio.sleep(0.05)


async def enqueue(store: Any, handler: str, count: int = 1, /, **kwargs: Any) -> list[int]:
    """Enqueue ``count`` copies of a task; ``kwargs`` are :class:`NewTask` fields."""
    results = await store.enqueue_many([NewTask(handler=handler, **kwargs)] * count)
    return [result.task.id for result in results]


async def tasks_in(queue: Any, state: TaskState | None = None) -> list[Any]:
    page = await queue.list_tasks(TaskFilter(state=state), limit=10_000, offset=0)
    return list(page.items)


async def queue_info(queue: Any, name: str = "default") -> Any:
    info = await queue.get_queue(name)
    assert info is not None, f"queue {name!r} is unknown"
    return info


@dataclass
class Gauge:
    """Counts handlers running at once (per queue) and remembers the peak."""

    now: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    done: list[int] = field(default_factory=list)

    def handler(self, seconds: float) -> Callable[[TaskContext], Awaitable[None]]:
        async def measured(context: TaskContext) -> None:
            name = context.task.queue
            self.now[name] = self.now.get(name, 0) + 1
            self.peak[name] = max(self.peak.get(name, 0), self.now[name])
            try:
                await asyncio.sleep(seconds)
            finally:
                self.now[name] -= 1
            self.done.append(context.task.id)

        return measured


# --- running tasks ---------------------------------------------------------------------


async def test_handlers_run_and_their_tasks_complete(queue):
    seen: list[tuple[int, dict[str, Any]]] = []

    async def record(context: TaskContext) -> None:
        seen.append((context.task.id, context.task.payload))

    ids = [
        (await queue.enqueue(NewTask(handler="test.record", payload={"n": n}))).task.id
        for n in range(20)
    ]

    async with running(queue, registry(record=record), drain=True) as handle:
        await asyncio.wait_for(asyncio.shield(handle.task), EVENTUALLY)

    assert sorted(task_id for task_id, _ in seen) == ids
    assert sorted(payload["n"] for _, payload in seen) == list(range(20))
    assert await tasks_in(queue) == []
    info = await queue_info(queue)
    assert (info.completed, info.failed, info.dead) == (20, 0, 0)


async def test_a_failing_handler_is_retried_by_its_policy_then_dead_lettered(queue):
    calls: list[int] = []

    async def flaky(context: TaskContext) -> None:
        calls.append(context.task.attempts)
        raise RuntimeError(f"boom on attempt {context.task.attempts}")

    [task_id] = await enqueue(queue, "test.flaky", retry=TINY_RETRY)

    async def is_dead() -> bool:
        task = await queue.get_task(task_id)
        return task is not None and task.state is TaskState.DEAD

    async with running(queue, registry(flaky=flaky)):
        await eventually(is_dead, "the task is dead-lettered")

    assert calls == [1, 2, 3]
    dead = await queue.get_task(task_id)
    assert dead.attempts == 3
    assert dead.dead_at is not None
    assert "RuntimeError" in dead.last_error
    assert "boom on attempt 3" in dead.last_error
    info = await queue_info(queue)
    assert (info.failed, info.dead, info.completed) == (3, 1, 0)


async def test_a_handler_that_succeeds_on_a_retry_completes(queue):
    calls: list[int] = []

    async def second_time_lucky(context: TaskContext) -> None:
        calls.append(context.task.attempts)
        if context.task.attempts < 2:
            raise RuntimeError("not yet")

    await enqueue(queue, "test.lucky", retry=TINY_RETRY)

    async def completed() -> bool:
        return (await queue_info(queue)).completed == 1

    async with running(queue, registry(lucky=second_time_lucky)):
        await eventually(completed, "the task completes on its second attempt")

    assert calls == [1, 2]
    assert await tasks_in(queue) == []
    info = await queue_info(queue)
    assert (info.failed, info.dead) == (1, 0)


async def test_a_permanent_failure_goes_straight_to_the_dead_letter_queue(queue):
    calls: list[int] = []

    async def refuse(context: TaskContext) -> None:
        calls.append(context.task.attempts)
        raise PermanentFailure("the input can never work")

    [task_id] = await enqueue(queue, "test.refuse", retry=TINY_RETRY)

    async with running(queue, registry(refuse=refuse), drain=True) as handle:
        await asyncio.wait_for(asyncio.shield(handle.task), EVENTUALLY)

    assert calls == [1]
    dead = await queue.get_task(task_id)
    assert dead.state is TaskState.DEAD
    assert dead.attempts == 1
    assert "the input can never work" in dead.last_error


async def test_an_expected_failure_logs_one_line_and_an_unexpected_one_its_traceback(queue, caplog):
    async def job_failed(context: TaskContext) -> None:
        raise JobRunFailed("run r1 of job 'nightly' failed: exit code 3")

    async def bug(context: TaskContext) -> None:
        raise ZeroDivisionError("division by zero")

    await enqueue(queue, "test.job_failed", retry=RetryPolicy(max_attempts=1))
    await enqueue(queue, "test.bug", retry=RetryPolicy(max_attempts=1))
    caplog.set_level(logging.WARNING, logger="service.worker")
    async with running(queue, registry(job_failed=job_failed, bug=bug), drain=True) as handle:
        await asyncio.wait_for(asyncio.shield(handle.task), EVENTUALLY)

    failed = {r.__dict__["handler"]: r for r in caplog.records if r.getMessage() == "task failed"}
    assert not failed["test.job_failed"].exc_info
    assert "exit code 3" in failed["test.job_failed"].__dict__["error"]
    assert failed["test.bug"].exc_info


async def test_a_task_for_an_unknown_handler_is_dead_lettered_with_a_clear_error(queue):
    [task_id] = await enqueue(queue, "test.nobody_has_this", retry=TINY_RETRY)

    async with running(queue, registry(), drain=True) as handle:
        await asyncio.wait_for(asyncio.shield(handle.task), EVENTUALLY)

    dead = await queue.get_task(task_id)
    assert dead.state is TaskState.DEAD
    assert dead.attempts == 1
    assert "no handler named 'test.nobody_has_this'" in dead.last_error


async def test_a_crashing_handler_never_takes_the_worker_down(queue):
    async def crash(context: TaskContext) -> None:
        raise ZeroDivisionError("division by zero in a handler")

    gauge = Gauge()
    # One slot and the crashes first: every good task runs after a crash in the same slot.
    await enqueue(queue, "test.crash", 5, priority=-10, retry=RetryPolicy(max_attempts=1))
    good = await enqueue(queue, "test.good", 10)

    async def good_ones_done() -> bool:
        return len(gauge.done) == len(good)

    async with running(
        queue, registry(crash=crash, good=gauge.handler(0.0)), concurrency=1
    ) as handle:
        await eventually(good_ones_done, "the good tasks complete after the crashes")
        assert not handle.task.done(), "the worker stopped after a handler crashed"

    assert sorted(gauge.done) == good
    dead = await tasks_in(queue, TaskState.DEAD)
    assert len(dead) == 5
    assert all("ZeroDivisionError" in task.last_error for task in dead)
    info = await queue_info(queue)
    assert (info.completed, info.dead) == (10, 5)


# --- leases -----------------------------------------------------------------------------


async def test_a_long_handler_keeps_its_lease_and_runs_once(queue, open_queue):
    """The heartbeat renews leases: a handler outliving its lease many times over is never
    handed to another worker while its own worker lives."""
    calls: list[str] = []

    async def long(context: TaskContext) -> None:
        calls.append(context.worker_id)
        await asyncio.sleep(3.0)

    handlers = registry(long=long)
    other = await open_queue()
    [task_id] = await enqueue(queue, "test.long")
    short = {"lease": timedelta(seconds=1), "heartbeat_interval": 0.2}

    async def completed() -> bool:
        return (await queue_info(queue)).completed == 1

    async with (
        running(queue, handlers, worker_id="first", **short),
        running(other, handlers, worker_id="second", **short),
    ):
        await eventually(completed, "the long task completes")

    assert len(calls) == 1, f"the task ran more than once: {calls}"
    assert await queue.get_task(task_id) is None


# --- shutdown -----------------------------------------------------------------------------


async def test_shutdown_after_the_grace_period_gives_unfinished_tasks_back(queue):
    started: list[int] = []

    async def forever(context: TaskContext) -> None:
        started.append(context.task.id)
        await asyncio.sleep(3600)

    ids = await enqueue(queue, "test.forever", 3)

    async def all_started() -> bool:
        return len(started) == 3

    async with running(
        queue, registry(forever=forever), shutdown_grace=0.2, worker_id="leaving"
    ) as handle:
        await eventually(all_started, "the three tasks start")
        assert {w.info.worker_id for w in await queue.list_workers()} == {"leaving"}
        await handle.stopped(timeout=EVENTUALLY)

    ready = await tasks_in(queue, TaskState.READY)
    assert sorted(task.id for task in ready) == ids
    assert all(task.attempts == 0 for task in ready), "an interrupted attempt was counted"
    assert all(task.lease_owner is None for task in ready)
    assert await tasks_in(queue, TaskState.RUNNING) == []
    assert await queue.list_workers() == []
    info = await queue_info(queue)
    assert (info.ready, info.running, info.completed, info.failed) == (3, 0, 0, 0)


async def test_shutdown_lets_running_handlers_finish_within_the_grace_period(queue):
    started: list[int] = []
    finished: list[int] = []

    async def brief(context: TaskContext) -> None:
        started.append(context.task.id)
        await asyncio.sleep(0.5)
        finished.append(context.task.id)

    ids = await enqueue(queue, "test.brief", 3)

    async def all_started() -> bool:
        return len(started) == 3

    async with running(queue, registry(brief=brief), shutdown_grace=30.0) as handle:
        await eventually(all_started, "the three tasks start")
        await handle.stopped()
        assert sorted(finished) == ids, "run() returned before the running handlers finished"

    assert await tasks_in(queue) == []
    assert (await queue_info(queue)).completed == 3
    assert await queue.list_workers() == []


async def test_drain_mode_returns_once_nothing_is_ready_or_running(queue):
    gauge = Gauge()
    ids = await enqueue(queue, "test.work", 12)
    ids += await enqueue(queue, "test.work", 2, queue="elsewhere")
    # Scheduled for later, so not ready: drain does not wait for it.
    [later] = await enqueue(queue, "test.work", run_at=datetime.now(UTC) + timedelta(hours=1))

    async with running(queue, registry(work=gauge.handler(0.05)), drain=True) as handle:
        await asyncio.wait_for(asyncio.shield(handle.task), EVENTUALLY)

    assert sorted(gauge.done) == ids
    remaining = await tasks_in(queue)
    assert [(task.id, task.state) for task in remaining] == [(later, TaskState.SCHEDULED)]


async def test_drain_mode_on_an_empty_queue_returns_at_once(queue):
    async with running(queue, registry(), drain=True) as handle:
        await asyncio.wait_for(asyncio.shield(handle.task), EVENTUALLY)
    assert handle.worker.processed == 0


# --- wake-up --------------------------------------------------------------------------------


async def test_an_idle_worker_picks_up_a_new_task_without_waiting_for_its_poll(queue):
    gauge = Gauge()
    # A poll this long cannot explain a pick-up within the bound: the wake-up must.
    async with running(queue, registry(work=gauge.handler(0.0)), poll_interval=60.0):
        await _until_idle(queue)
        [task_id] = await enqueue(queue, "test.work")
        await _within(5.0, lambda: task_id in gauge.done, "the new task runs")


@only_postgres
async def test_an_idle_worker_is_woken_by_an_enqueue_from_another_process(queue, open_queue):
    """LISTEN/NOTIFY: an enqueue on another connection (another process) wakes the worker."""
    gauge = Gauge()
    producer = await open_queue()
    async with running(queue, registry(work=gauge.handler(0.0)), poll_interval=60.0):
        await _until_idle(queue)
        [task_id] = await enqueue(producer, "test.work")
        await _within(5.0, lambda: task_id in gauge.done, "the new task runs")


# --- concurrency ----------------------------------------------------------------------------


async def test_a_worker_never_runs_more_handlers_at_once_than_its_concurrency(queue):
    gauge = Gauge()
    await enqueue(queue, "test.work", 30)

    async with running(queue, registry(work=gauge.handler(0.05)), concurrency=3, drain=True) as h:
        await asyncio.wait_for(asyncio.shield(h.task), EVENTUALLY)

    assert len(gauge.done) == 30
    assert gauge.peak["default"] <= 3
    assert gauge.peak["default"] > 1, "the worker never ran handlers concurrently"


async def test_a_serial_queue_never_runs_two_tasks_at_once_across_workers(queue, open_queue):
    gauge = Gauge()
    await queue.set_queue_concurrency("serial", 1)
    serial = await enqueue(queue, "test.work", 12, queue="serial")
    parallel = await enqueue(queue, "test.work", 12, queue="parallel")
    handlers = registry(work=gauge.handler(0.05))
    other = await open_queue()

    async def all_done() -> bool:
        return len(gauge.done) == len(serial) + len(parallel)

    async with running(queue, handlers, concurrency=4), running(other, handlers, concurrency=4):
        await eventually(all_done, "every task completes")

    assert gauge.peak["serial"] == 1
    assert gauge.peak["parallel"] > 1, "the limit of one queue held back another"
    assert await tasks_in(queue) == []


# --- helpers ----------------------------------------------------------------------------------


async def _until_idle(queue: Any) -> None:
    """Wait until the worker has registered and found nothing to do."""

    async def registered() -> bool:
        return len(await queue.list_workers()) == 1

    await eventually(registered, "the worker registers")
    await asyncio.sleep(0.5)  # its first (empty) claim is done; it now waits for work


async def _within(seconds: float, check: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.02)


# --- store outages ----------------------------------------------------------------------


class FlakyQueue:
    """The queue, out of reach while ``down`` is set (every call raises StoreUnavailable)."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._queue, name)
        if not callable(attribute) or not asyncio.iscoroutinefunction(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreUnavailable("the store is out of reach (test)")
            return await attribute(*args, **kwargs)

        return call


async def test_a_live_worker_swept_from_the_registry_is_listed_again(queue):
    async with running(queue, registry(), heartbeat_interval=0.2) as handle:
        await eventually(
            lambda: _listed(queue, handle.worker.worker_id), "the worker is registered"
        )
        # Another worker's sweep that took this one for dead (its heartbeat looked stale).
        assert handle.worker.worker_id in await queue.sweep_stale_workers(timedelta(0))
        await eventually(
            lambda: _listed(queue, handle.worker.worker_id), "the worker registers again"
        )


async def test_after_a_store_outage_no_lease_is_reclaimed_before_its_owner_could_renew(queue):
    # Another worker's task whose lease ran out while the store was out of reach.
    [task_id] = await enqueue(queue, "builtin.noop")
    assert len(await queue.claim("other-worker", 1, lease=timedelta(seconds=1))) == 1
    flaky = FlakyQueue(queue)
    async with running(flaky, registry(), heartbeat_interval=1.0, lease=timedelta(seconds=1)):
        await asyncio.sleep(0.2)
        flaky.down = True
        await asyncio.sleep(2.5)  # the lease expires during the outage
        flaky.down = False
        back = asyncio.get_running_loop().time()
        await asyncio.sleep(1.2)
        task = await queue.get_task(task_id)
        assert task.state is TaskState.RUNNING, "reclaimed before its owner could renew"
        assert task.lease_owner == "other-worker"

        async def reclaimed() -> bool:
            task = await queue.get_task(task_id)  # None once run again and completed
            return task is None or task.lease_owner != "other-worker"

        await eventually(reclaimed, "the lease of a worker that never renewed is reclaimed")
        assert asyncio.get_running_loop().time() - back >= 2.0


async def _listed(queue: Any, worker_id: str) -> bool:
    return worker_id in {record.info.worker_id for record in await queue.list_workers()}

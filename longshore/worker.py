"""The worker patterns: run until a signal, run beside your app, or drain once.

::

    worker = longshore.Worker(url, registry, concurrency=16, queues=["fast", "bulk"])
    await worker.run()                   # until SIGINT / SIGTERM, like `longshore worker`
    async with worker.running(): ...     # in the background, e.g. in a FastAPI lifespan
    await worker.run_until_idle()        # until nothing is ready or running (tests, batches)

Underneath is Longshore's own worker (:class:`service.worker.Worker`: batched claims,
lease renewal, crash recovery, graceful shutdown), running your typed handlers through the
existing handler contract; the hooks are its observer; with schedule factories in the
registry the worker also runs the (leader-elected) scheduler.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any

from longshore.client import Client
from longshore.context import Context
from longshore.handlers import Registry, TypedHandler
from longshore.hooks import HookDispatcher
from longshore.schedules import build_factories
from scheduler.manager import ScheduleManager
from scheduler.service import SchedulerService
from service.signals import stop_on_signals
from service.worker import HandlerRegistry, WorkerOptions
from service.worker import Worker as QueueWorker
from store.background import TaskOwner
from store.queue.handlers import Handler, TaskContext
from store.queue.models import TaskState
from store.queue.protocol import TaskQueue

__all__ = ["Worker"]


class _Cancellation:
    """The ``cancelled`` events of running handlers, all set once the worker stops."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._events: set[asyncio.Event] = set()

    def new(self) -> asyncio.Event:
        event = asyncio.Event()
        if self._stop.is_set():
            event.set()
        self._events.add(event)
        return event

    def discard(self, event: asyncio.Event) -> None:
        self._events.discard(event)

    async def watch(self) -> None:
        await self._stop.wait()
        for event in self._events:
            event.set()


class Worker:
    """Runs the handlers of ``registry`` for tasks of the database ``target`` (a URL, or an
    open :class:`Client` to share).

    ``concurrency`` handlers run at once; ``queues`` restricts the claims (default: every
    queue); ``weights`` (``{queue: 1-1000}``) and ``queue_limits`` (``{queue: n}``, 1 = a
    serial queue) are applied to the database when the worker starts, as
    ``WORKER_ADMIN_QUEUE_WEIGHTS`` and ``WORKER_QUEUE_CONCURRENCY`` are. ``cron``
    (``{schedule: spec}``) creates or updates schedules of the registry's factories, as
    ``WORKER_DURABLE_CRON_PRESETS`` does; ``scheduler`` (default: when the registry has
    factories) runs the leader-elected scheduler in this worker. Leases, polling, grace
    and claim batches default to ``longshore worker``'s.
    """

    def __init__(
        self,
        target: str | Client,
        registry: Registry,
        *,
        concurrency: int = 8,
        queues: Sequence[str] | None = None,
        weights: Mapping[str, int] | None = None,
        queue_limits: Mapping[str, int | None] | None = None,
        cron: Mapping[str, str] | None = None,
        scheduler: bool | None = None,
        lease: timedelta = timedelta(seconds=30),
        poll_interval: float = 1.0,
        shutdown_grace: float = 30.0,
        claim_batch: int = 32,
        worker_id: str | None = None,
    ) -> None:
        self._target = target
        self._registry = registry
        self._options = WorkerOptions(
            concurrency=concurrency,
            lease=lease,
            heartbeat_interval=lease.total_seconds() / 3,
            poll_interval=poll_interval,
            shutdown_grace=shutdown_grace,
            stale_after=max(lease * 2, timedelta(seconds=10)),
            claim_batch=claim_batch,
            queues=tuple(queues) if queues else None,
        )
        if worker_id is not None:
            self._options = dataclasses.replace(self._options, worker_id=worker_id)
        self._weights = dict(weights or {})
        self._queue_limits = dict(queue_limits or {})
        self._cron = dict(cron or {})
        self._scheduler = bool(registry.factories) if scheduler is None else scheduler
        self._stop: asyncio.Event | None = None
        self._current: QueueWorker | None = None
        self._finished_runs = 0

    @property
    def processed(self) -> int:
        """Tasks run (whatever their outcome) since the worker was created."""
        current = self._current.processed if self._current is not None else 0
        return self._finished_runs + current

    @property
    def worker_id(self) -> str:
        return self._options.worker_id

    # --- the three patterns -------------------------------------------------------------------

    async def run(self) -> int:
        """Work until SIGINT or SIGTERM (or :meth:`stop`): the first signal stops claiming
        and lets running tasks finish within the grace period, a second cancels them (their
        leases are given back). Returns the number of tasks run."""
        stop = asyncio.Event()
        with stop_on_signals(stop):
            return await self._work(stop, drain=False)

    async def run_until_idle(self) -> int:
        """Work until no task is ready or running in the served queues (scheduled ones may
        remain), then stop cleanly; returns the number of tasks run."""
        return await self._work(asyncio.Event(), drain=True)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Worker]:
        """Run in the background for the duration of the block; entering returns once the
        database is open (one that cannot be reached fails here), leaving stops the worker
        as gracefully as :meth:`run` does on a signal."""
        stop = asyncio.Event()
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        async with TaskOwner("longshore-worker") as owner:
            working = owner.spawn(self._work(stop, drain=False, started=started), name="worker")
            first: set[asyncio.Future[Any]] = {working, started}
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if working.done():
                working.result()  # raises what stopped it
            try:
                yield self
            finally:
                stop.set()
                await asyncio.shield(working)

    def stop(self) -> None:
        """Ask the running worker to stop gracefully (as the first signal does)."""
        if self._stop is not None:
            self._stop.set()

    # --- one run -------------------------------------------------------------------------------

    async def _work(
        self, stop: asyncio.Event, *, drain: bool, started: asyncio.Future[None] | None = None
    ) -> int:
        self._stop = stop
        options = dataclasses.replace(self._options, drain=drain)
        async with AsyncExitStack() as stack:
            client = await self._client(stack)
            queue = client.queue
            await self._apply_queue_settings(queue)
            if self._scheduler and not drain:
                await self._start_scheduler(stack, client)
            cancellation = _Cancellation(stop)
            owner = await stack.enter_async_context(TaskOwner("longshore-worker-signals"))
            owner.spawn(cancellation.watch(), name="worker-cancellation")
            hooks = self._registry.hooks()
            worker = QueueWorker(
                queue,
                self._handlers(client, cancellation, queue, options),
                options,
                observer=HookDispatcher(hooks, client) if hooks else None,
            )
            if started is not None and not started.done():
                started.set_result(None)
            self._current = worker
            try:
                await worker.run(stop)
            finally:
                self._current = None
                self._finished_runs += worker.processed
            return worker.processed

    async def _client(self, stack: AsyncExitStack) -> Client:
        if isinstance(self._target, Client):
            return self._target
        pool = max(4, self._options.concurrency // 4)
        return await stack.enter_async_context(Client(self._target, pool_size=pool))

    async def _apply_queue_settings(self, queue: TaskQueue) -> None:
        if self._weights:
            await queue.set_default_weights(self._weights)
        for name, limit in self._queue_limits.items():
            await queue.set_queue_concurrency(name, limit)

    async def _start_scheduler(self, stack: AsyncExitStack, client: Client) -> None:
        factories = build_factories(self._registry, client)
        stores = client.stores
        if self._cron:
            manager = ScheduleManager(
                store=stores.schedules,
                queue=stores.queue,
                factories=factories,
                events=client.events,
            )
            await manager.apply_presets(self._cron)
        service = SchedulerService(
            store=stores.schedules,
            queue=stores.queue,
            factories=factories,
            events=client.events,
            instance=self.worker_id,
        )
        await stack.enter_async_context(service)

    def _handlers(
        self,
        client: Client,
        cancellation: _Cancellation,
        queue: TaskQueue,
        options: WorkerOptions,
    ) -> HandlerRegistry:
        async def renew(task_id: int) -> bool:
            await queue.heartbeat(options.worker_id, options.lease)
            task = await queue.get_task(task_id)
            return (
                task is not None
                and task.state is TaskState.RUNNING
                and task.lease_owner == options.worker_id
            )

        handlers = HandlerRegistry()
        for typed in self._registry:
            handlers.register(typed.name, _adapt(typed, client, cancellation, renew))
        return handlers


def _adapt(
    typed: TypedHandler[Any], client: Client, cancellation: _Cancellation, renew: Any
) -> Handler:
    """The typed handler behind the worker's handler contract."""

    async def handle(context: TaskContext) -> None:
        ctx = Context(
            task=context.task,
            worker_id=context.worker_id,
            client=client,
            signals=cancellation,
            renew=renew,
        )
        try:
            await typed.run(context.task.payload, ctx)
        finally:
            ctx.release()

    return handle

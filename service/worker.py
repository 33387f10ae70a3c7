"""The worker: claims tasks from the durable queue and runs their handlers.

One worker runs up to ``concurrency`` handlers at once. Around them it keeps four owned
background loops:

- the *claim loop* fills free slots with batched claims, claims ahead while tasks finish
  quickly (:mod:`service.claim_ahead`), and sleeps on the queue's wake-up (LISTEN/NOTIFY or
  an in-process event) with polling only as the fallback;
- the *result flusher* writes completions and failures in batches, kept through a store
  outage and fenced by the lease each attempt held (:mod:`service.results`);
- the *heartbeat* renews every lease this worker holds at a third of the lease length and
  keeps it registered, and the *maintenance* loop returns expired leases and stale workers'
  tasks to the queue, fairly after a store outage (:mod:`service.liveness`).

An optional :class:`~service.observer.TaskObserver` sees each task before and after its
handler. A handler that raises never takes the worker down: the error is recorded on the task,
which is retried by its policy or dead-lettered (:class:`PermanentFailure` skips retries).
Shutdown (``stop`` set): stop claiming, give back the tasks claimed ahead, let running
handlers finish within the grace period, cancel the rest and give their leases back, flush
results, deregister.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from service import claim_ahead
from service.claim_ahead import ClaimAhead
from service.errors import UnknownHandler
from service.liveness import Liveness
from service.observer import TaskObserver, TaskOutcome, Verdict, notify
from service.results import ResultWriter
from store.background import TaskOwner
from store.errors import LongshoreError, PermanentFailure, StoreUnavailable
from store.queue.handlers import Handler, LateResultHook, TaskContext
from store.queue.models import Failure, Task, WorkerInfo
from store.queue.protocol import TaskQueue

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4000


class HandlerRegistry:
    """Handlers by task name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._late_hooks: dict[str, LateResultHook] = {}

    def register(
        self, name: str, handler: Handler, *, on_late_result: LateResultHook | None = None
    ) -> None:
        """Register ``handler`` for tasks named ``name``; ``on_late_result`` is told when
        one of its successes was written after its lease lapsed (:mod:`service.results`)."""
        if name in self._handlers:
            raise ValueError(f"handler {name!r} is already registered")
        self._handlers[name] = handler
        if on_late_result is not None:
            self._late_hooks[name] = on_late_result

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def late_result_hook(self, name: str) -> LateResultHook | None:
        return self._late_hooks.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    concurrency: int = 8
    lease: timedelta = timedelta(seconds=30)
    heartbeat_interval: float = 10.0
    poll_interval: float = 1.0
    shutdown_grace: float = 30.0
    stale_after: timedelta = timedelta(seconds=60)
    claim_batch: int = 32
    key_retention: timedelta = timedelta(days=7)
    queues: tuple[str, ...] | None = None
    drain: bool = False
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )


class Worker:
    """Runs handlers for claimed tasks; see the module docstring."""

    def __init__(
        self,
        queue: TaskQueue,
        registry: HandlerRegistry,
        options: WorkerOptions,
        *,
        observer: TaskObserver | None = None,
    ) -> None:
        self._queue = queue
        self._registry = registry
        self._options = options
        self._observer = observer
        self._active: dict[int, asyncio.Task[None]] = {}
        self._ahead = ClaimAhead(batch=options.claim_batch)
        self._slot_freed = asyncio.Event()
        self._results = ResultWriter(queue, options.worker_id, registry.late_result_hook)
        self._stopping = asyncio.Event()
        self._liveness = Liveness(
            queue,
            WorkerInfo(
                worker_id=options.worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                concurrency=options.concurrency,
                queues=options.queues,
            ),
            lease=options.lease,
            heartbeat_interval=options.heartbeat_interval,
            stale_after=options.stale_after,
            key_retention=options.key_retention,
        )
        self.processed = 0

    @property
    def worker_id(self) -> str:
        return self._options.worker_id

    @property
    def busy(self) -> int:
        """Tasks this worker holds now: handlers running (with their observer's hooks) and
        tasks claimed ahead."""
        return len(self._active) + len(self._ahead)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set (or, in drain mode, until no work is left)."""
        opts = self._options
        await self._retrying("register", self._liveness.register)
        logger.info(
            "worker started",
            extra={"worker_id": self.worker_id, "concurrency": opts.concurrency},
        )
        loops = TaskOwner("worker")
        loops.spawn(self._results.loop(), name="worker-flush")
        loops.spawn(self._liveness.heartbeat_loop(), name="worker-heartbeat")
        loops.spawn(self._liveness.maintenance_loop(), name="worker-maintenance")
        handlers = TaskOwner("worker-handlers")
        try:
            await self._claim_loop(stop, handlers)
        finally:
            self._stopping.set()
            await self._shutdown(loops, handlers)

    # --- claiming -------------------------------------------------------------------------

    async def _claim_loop(self, stop: asyncio.Event, handlers: TaskOwner) -> None:
        opts = self._options
        backoff = 0.1
        while not stop.is_set():
            self._dispatch(handlers)
            want = self._ahead.want(opts.concurrency - len(self._active))
            if want <= 0:
                self._slot_freed.clear()
                held: list[Coroutine[Any, Any, object]] = [stop.wait(), self._slot_freed.wait()]
                if self._ahead:
                    held.append(asyncio.sleep(claim_ahead.HOLD_AHEAD))
                await _first_of(*held)
                if len(self._active) >= opts.concurrency and self._ahead.held_too_long():
                    # The tasks that were finishing quickly are not any more: let other
                    # workers have what this one claimed ahead.
                    await self._return_claimed_ahead()
                continue
            try:
                tasks = await self._queue.claim(
                    self.worker_id, want, lease=opts.lease, queues=opts.queues
                )
                backoff = 0.1
            except StoreUnavailable as exc:
                logger.warning("claim failed; retrying", extra={"error": str(exc)})
                await _first_of(stop.wait(), asyncio.sleep(backoff))
                backoff = min(backoff * 2, 5.0)
                continue
            if tasks:
                self._ahead.add(tasks)
                continue
            if opts.drain and not self._active and await self._nothing_left():
                logger.info("drained: nothing ready or running", extra={})
                return
            self._slot_freed.clear()
            waits: list[Coroutine[Any, Any, object]] = [
                stop.wait(),
                self._queue.wait_for_work(opts.poll_interval),
            ]
            if opts.drain:
                # A finishing handler may be the last one; re-check promptly.
                waits.append(self._slot_freed.wait())
            await _first_of(*waits)

    async def _nothing_left(self) -> bool:
        """Drain mode: no claimable or running task remains in the served queues."""
        await self._results.flushed_now()
        try:
            if await self._queue.is_global_paused():
                return True
            queues = await self._queue.list_queues()
        except StoreUnavailable:
            return False
        wanted = set(self._options.queues) if self._options.queues else None
        return all(
            (q.ready == 0 or q.paused) and q.running == 0
            for q in queues
            if wanted is None or q.name in wanted
        )

    def _dispatch(self, handlers: TaskOwner) -> None:
        """Start claimed tasks while slots are free."""
        for task in self._ahead.take(self._options.concurrency - len(self._active)):
            self._active[task.id] = handlers.spawn(self._execute(task), name=f"task-{task.id}")

    # --- running a handler ----------------------------------------------------------------

    async def _execute(self, task: Task) -> None:
        context = TaskContext(task=task, worker_id=self.worker_id)
        try:
            if self._observer is None:
                await self._run_handler(context)
            else:
                await notify(self._observer.before_run, context, task_id=task.id)
                outcome = await self._run_handler(context)
                await notify(self._observer.after_run, outcome, task_id=task.id)
        finally:
            self.processed += 1
            self._ahead.finished()
            self._active.pop(task.id, None)
            self._slot_freed.set()

    async def _run_handler(self, context: TaskContext) -> TaskOutcome:
        task = context.task
        try:
            handler = self._registry.get(task.handler)
            if handler is None:
                raise UnknownHandler(f"no handler named {task.handler!r} on this worker")
            await handler(context)
        except asyncio.CancelledError:
            # Shutdown after the grace period: the lease is given back by _shutdown.
            raise
        except PermanentFailure as exc:
            return self._record_failure(context, exc, retry=False)
        except Exception as exc:
            return self._record_failure(context, exc, retry=True)
        self._results.completed(context)
        return TaskOutcome(context=context, verdict=Verdict.COMPLETED)

    def _record_failure(
        self, context: TaskContext, exc: BaseException, *, retry: bool
    ) -> TaskOutcome:
        task = context.task
        message = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        retry_at = (
            task.retry.next_run_at(attempts=task.attempts, now=datetime.now(UTC)) if retry else None
        )
        logger.warning(
            "task failed",
            extra={
                "task_id": task.id,
                "handler": task.handler,
                "attempt": task.attempts,
                "retry_at": retry_at.isoformat() if retry_at else None,
                "error": message,
            },
            # An error Longshore raises on purpose (a job's non-zero exit or timeout, a
            # refused source, an engine outage) is told by its message; a traceback is for
            # the unexpected.
            exc_info=not isinstance(exc, LongshoreError),
        )
        self._results.failed(
            Failure(task_id=task.id, error=message, retry_at=retry_at, attempt=task.attempts)
        )
        return TaskOutcome(
            context=context,
            verdict=Verdict.DEAD if retry_at is None else Verdict.RETRY,
            error=exc,
            message=message,
            retry_at=retry_at,
            permanent=not retry,
        )

    # --- shutdown -----------------------------------------------------------------------

    async def _shutdown(self, loops: TaskOwner, handlers: TaskOwner) -> None:
        opts = self._options
        if self._ahead:
            await asyncio.shield(self._return_claimed_ahead())
        if self._active:
            logger.info(
                "waiting for running tasks",
                extra={"running": len(self._active), "grace_seconds": opts.shutdown_grace},
            )
            _, pending = await asyncio.wait(
                list(self._active.values()), timeout=opts.shutdown_grace
            )
            if pending:
                unfinished = [tid for tid, t in self._active.items() if t in pending]
                for runner in pending:
                    runner.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                await asyncio.shield(self._give_back(unfinished))
        # Every handler has ended by now (finished, or cancelled and its lease given back).
        await handlers.close()
        await asyncio.shield(self._final_writes())
        await loops.close()
        logger.info("worker stopped", extra={"worker_id": self.worker_id})

    async def _return_claimed_ahead(self) -> None:
        """Give the tasks claimed ahead back to the queue; kept (and their leases renewed)
        if the store cannot take them now."""
        task_ids = self._ahead.ids()
        try:
            await self._queue.release(self.worker_id, task_ids)
        except StoreUnavailable as exc:
            logger.warning("could not give back tasks claimed ahead", extra={"error": str(exc)})
            return
        self._ahead.clear()
        logger.debug("gave back tasks claimed ahead", extra={"task_ids": task_ids})

    async def _give_back(self, task_ids: list[int]) -> None:
        try:
            await self._queue.release(self.worker_id, task_ids)
            logger.info("gave back unfinished tasks", extra={"task_ids": task_ids})
        except StoreUnavailable as exc:
            logger.warning(
                "could not give back leases; they will expire",
                extra={"task_ids": task_ids, "error": str(exc)},
            )

    async def _final_writes(self) -> None:
        try:
            await asyncio.wait_for(self._results.flush(), timeout=30)
            await self._queue.deregister_worker(self.worker_id)
        except (StoreUnavailable, TimeoutError) as exc:
            logger.warning("final writes failed; leases will expire", extra={"error": str(exc)})

    async def _retrying(self, what: str, call: Callable[[], Awaitable[None]]) -> None:
        backoff = 0.2
        while True:
            try:
                await call()
                return
            except StoreUnavailable as exc:
                logger.warning(f"{what} failed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


async def _first_of(*waits: Coroutine[Any, Any, object]) -> None:
    """Wait until the first of ``waits`` finishes; cancel the others."""
    async with TaskOwner("worker-wait") as owner:
        tasks = [owner.spawn(wait, name="worker-wait") for wait in waits]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)

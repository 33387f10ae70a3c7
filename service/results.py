"""A worker's results: written in batches, kept through a store outage, fenced by lease.

Completions and failures are written in batches, so a burst of short tasks costs one round
trip per batch, not one per task. A batch the store refuses (an outage) is kept and written
when the store is back. Completions are written against the lease each attempt held
(``TaskQueue.complete_fenced``): a success held back past its lease (an outage longer than
the lease, a worker paused) still settles its task when that lapse is all that happened
since, out of the dead-letter queue included, and is logged and handed to its handler's
late-result hook (the job runner records it on the attempt's run). Failures are written
only while the worker still holds the task's lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from store.errors import StoreUnavailable
from store.queue.handlers import LateResultHook, TaskContext
from store.queue.models import Failure, LateOutcome, Lease
from store.queue.protocol import TaskQueue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Success:
    context: TaskContext

    @property
    def lease(self) -> Lease:
        task = self.context.task
        return Lease(task_id=task.id, attempt=task.attempts)


class ResultWriter:
    """Buffers one worker's results and writes them (see the module docstring)."""

    def __init__(
        self,
        queue: TaskQueue,
        worker_id: str,
        late_hook: Callable[[str], LateResultHook | None],
    ) -> None:
        self._queue = queue
        self._worker_id = worker_id
        self._late_hook = late_hook
        self._completed: list[_Success] = []
        self._failed: list[Failure] = []
        # Completions whose write failed once: the store may have applied it anyway (the
        # answer was lost), so "finished" is then no news.
        self._retried: set[int] = set()
        self._ready = asyncio.Event()
        self._flushed = asyncio.Event()
        # One flush at a time: the final flush at shutdown must wait for one in flight,
        # or deregistering would give back leases of tasks whose completion is unwritten.
        self._lock = asyncio.Lock()

    @property
    def pending(self) -> bool:
        return bool(self._completed or self._failed)

    def completed(self, context: TaskContext) -> None:
        self._completed.append(_Success(context))
        self._ready.set()

    def failed(self, failure: Failure) -> None:
        self._failed.append(failure)
        self._ready.set()

    async def loop(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            backoff = 0.1
            while self._completed or self._failed:
                completed, self._completed = self._completed, []
                failed, self._failed = self._failed, []
                try:
                    outcomes = {}
                    if completed:
                        outcomes = await self._queue.complete_fenced(
                            self._worker_id, [success.lease for success in completed]
                        )
                    if failed:
                        await self._queue.fail(self._worker_id, failed)
                except StoreUnavailable as exc:
                    # Keep the results and try again when the store is back; the heartbeat
                    # renews the leases meanwhile, and a lease lost anyway fences the write.
                    self._completed[:0] = completed
                    self._failed[:0] = failed
                    self._retried.update(success.context.task.id for success in completed)
                    logger.warning("writing results failed; retrying", extra={"error": str(exc)})
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                for success in completed:
                    task_id = success.context.task.id
                    outcome = outcomes.get(task_id, LateOutcome.FINISHED)
                    retried = task_id in self._retried
                    self._retried.discard(task_id)
                    if outcome is LateOutcome.WRITTEN:
                        continue
                    if retried and outcome is LateOutcome.FINISHED:
                        continue  # most likely written by the try whose answer was lost
                    await self._late(success.context, outcome)
            self._flushed.set()

    async def flushed_now(self) -> None:
        """Wait until every result buffered so far is written."""
        if self.pending:
            self._flushed.clear()
            self._ready.set()
            await self._flushed.wait()

    async def _late(self, context: TaskContext, outcome: LateOutcome) -> None:
        task = context.task
        logger.warning(
            "a success arrived after its lease lapsed",
            extra={
                "task_id": task.id,
                "handler": task.handler,
                "attempt": task.attempts,
                "outcome": outcome.value,
            },
        )
        hook = self._late_hook(task.handler)
        if hook is None:
            return
        try:
            await hook(context, outcome)
        except Exception:
            logger.exception("late result hook failed", extra={"task_id": task.id})

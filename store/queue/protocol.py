"""The durable task queue contract.

Every backend (``store.queue.sqlite``, ``store.queue.postgres``) implements
:class:`TaskQueue`; the contract suite in ``tests/contract`` holds each to these docstrings.

Vocabulary
----------
- A task is *waiting* until claimed. Waiting tasks whose ``run_at`` has passed are *ready*,
  the others *scheduled*.
- A *claim* hands waiting tasks to a worker and gives it a *lease* until an expiry time.
  While the lease is alive no other worker can claim the task. The worker renews its leases
  with :meth:`TaskQueue.heartbeat`; a lease that expires (the worker died) makes the task
  claimable again through :meth:`TaskQueue.reclaim_expired` (at-least-once execution).
- ``attempts`` counts claims. A task whose attempt fails is retried (waiting again, with a
  later ``run_at``) or *dead* (in the dead-letter queue).
- Completed tasks are deleted, except that a task with an idempotency key is kept as
  ``done`` for ``key_retention`` so that ``dedupe`` still sees it.

Claim order
-----------
A claim never returns a task of a paused queue, or any task while dequeue is paused
globally, or a task whose ``run_at`` is in the future. It never makes a queue hold more
running tasks than its concurrency limit (1 = a serial queue), across every worker.
Among queues with ready tasks, each claim call picks queues by weighted random choice
(a queue of weight 3 is picked about three times as often as one of weight 1) and within
a queue takes the lowest ``priority`` first, then the earliest ``run_at``, then the lowest id.

Errors
------
Every method may raise :class:`store.errors.StoreUnavailable` when the database cannot be
reached; nothing the call would have written is then acknowledged. Methods taking ids
ignore ids that do not match the required state, unless documented otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from store.queue.models import (
    DeadFilter,
    DeadStats,
    EnqueueResult,
    Failure,
    LateOutcome,
    Lease,
    NewTask,
    Page,
    QueueInfo,
    Reschedule,
    Task,
    TaskChange,
    TaskFilter,
    WorkerInfo,
    WorkerRecord,
)


class TaskQueue(Protocol):
    """A durable, multi-queue task queue with leases, retries and a dead-letter queue."""

    # --- producing -----------------------------------------------------------------------

    async def enqueue(self, task: NewTask) -> EnqueueResult:
        """Persist one task; when this returns, it survives ``kill -9`` of any process.

        With ``task.key`` set, applies ``task.key_mode`` (see :class:`KeyMode`) atomically:
        two concurrent enqueues with one key never create two tasks. ``run_at`` defaults to
        now. Creates the queue's settings row if the queue is new. Wakes idle workers.
        """
        ...

    async def enqueue_many(self, tasks: Sequence[NewTask]) -> list[EnqueueResult]:
        """Enqueue several tasks in one transaction: all are persisted or none is.

        Results are in input order. Key modes apply as in :meth:`enqueue`, in input order.
        """
        ...

    # --- consuming -----------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        limit: int,
        *,
        lease: timedelta,
        queues: Sequence[str] | None = None,
    ) -> list[Task]:
        """Claim up to ``limit`` ready tasks for ``worker_id`` (see *Claim order*).

        Each returned task is ``running``, its ``attempts`` already incremented, its lease
        owned by ``worker_id`` until now + ``lease``. ``queues`` restricts the claim to those
        queues. Returns ``[]`` when nothing is claimable. Safe to call from any number of
        workers at once: a task is never returned to two claims while its lease is alive.
        """
        ...

    async def complete(self, worker_id: str, task_ids: Sequence[int]) -> int:
        """Mark tasks leased by ``worker_id`` as completed; return how many were.

        Tasks without a key are deleted; keyed ones become ``done``. Ids that are not
        running under this worker's lease (e.g. reclaimed after it expired) are ignored.
        Increments each queue's ``completed`` counter.
        """
        ...

    async def complete_fenced(
        self, worker_id: str, leases: Sequence[Lease]
    ) -> dict[int, LateOutcome]:
        """Complete tasks as :meth:`complete` does, each fenced by the lease its attempt held
        (``worker_id`` and the attempt number its claim returned); return each task's
        :class:`LateOutcome`.

        A success whose lease lapsed meanwhile (held back by a store outage, or by a worker
        paused past its lease) still settles the task when that lapse is all that happened
        since: a task dead-lettered or returned to the queue because this lease expired or
        its worker was swept (same attempt number, ``last_error`` naming this worker's
        lease) is completed (out of the DLQ), and one claimed again since (a higher attempt
        number, running) is completed under the re-run's nose. A task done or deleted
        already is ``finished``; one failed or replayed since is left as it is
        (``ignored``). Counts each completion in
        the queue's ``completed`` counter; a task completed late keeps why in
        ``last_error`` while its key is retained.
        """
        ...

    async def fail(self, worker_id: str, failures: Sequence[Failure]) -> int:
        """Record failed attempts of tasks leased by ``worker_id``; return how many applied.

        A failure with ``retry_at`` makes the task waiting again at that time; one without
        moves it to the dead-letter queue (``dead_at`` = now). ``last_error`` is set either
        way, the lease cleared, and the queue's ``failed`` counter incremented. A failure
        naming its ``attempt`` applies only to the claim that returned that attempt number
        (a later claim of the task by the same worker is not failed by an earlier one).
        """
        ...

    async def release(self, worker_id: str, task_ids: Sequence[int]) -> int:
        """Give back leases without a verdict (graceful shutdown); return how many.

        The tasks become ready again at once and the interrupted attempt is not counted.
        """
        ...

    async def heartbeat(self, worker_id: str, lease: timedelta) -> int:
        """Renew every lease ``worker_id`` holds to now + ``lease`` and refresh its
        registration's heartbeat; return the number of leases renewed."""
        ...

    async def reclaim_expired(self) -> int:
        """Make running tasks whose lease expired waiting again (ready now: ``run_at`` becomes
        the earlier of its old value and now, so it keeps its place), keeping the attempt count
        and noting the lost lease in ``last_error``; a task that has used all its attempts goes
        to the dead-letter queue instead. A lost lease is not a failed attempt: the queue's
        ``failed`` counter is unchanged. Returns how many were touched."""
        ...

    async def wait_for_work(self, timeout: float) -> None:  # noqa: ASYNC109
        """Return when new work may be ready (an enqueue, a replay, a resume) or after
        ``timeout`` seconds, whichever comes first. Spurious wake-ups are allowed."""
        ...

    # --- inspecting and managing tasks --------------------------------------------------

    async def get_task(self, task_id: int) -> Task | None:
        """The task with this id in any state, or ``None``."""
        ...

    async def list_tasks(
        self, filter: TaskFilter, *, limit: int, offset: int, count_max: int | None = None
    ) -> Page[Task]:
        """Tasks matching ``filter``, ordered by id, with the total count. With
        ``count_max`` the count stops there (``total == count_max`` means "at least"), so
        the cost of a page does not grow with the number of matching tasks beyond it."""
        ...

    async def cancel(self, task_id: int) -> Task:
        """Delete a waiting task and return it as it was.

        Raises :class:`TaskNotFound` if there is no such task, :class:`TaskNotWaiting` if
        it is running, dead or done.
        """
        ...

    # --- operator actions (store.queue.operator says which states each applies to) -------

    async def complete_task(self, task_id: int) -> TaskChange:
        """Complete a waiting or dead task without running it (keyless: deleted; keyed:
        ``done``). Raises :class:`TaskNotFound`, or :class:`TaskNotWaiting` for a running
        or done task."""
        ...

    async def fail_task(self, task_id: int, reason: str) -> TaskChange:
        """Move a waiting task to the dead-letter queue with ``reason`` as its
        ``last_error``. Raises :class:`TaskNotFound` or :class:`TaskNotWaiting`."""
        ...

    async def run_task_now(self, task_id: int) -> TaskChange:
        """Make a waiting task ready now. Raises :class:`TaskNotFound` or
        :class:`TaskNotWaiting`."""
        ...

    async def reschedule_task(self, task_id: int, change: Reschedule) -> TaskChange:
        """Change a waiting task's run time, priority, attempts or max attempts. Raises
        :class:`TaskNotFound`, :class:`TaskNotWaiting`, or :class:`InvalidTask` when the
        task would be left with no attempt (``attempts >= max_attempts``)."""
        ...

    async def remove_task_by_key(self, key: str, *, queue: str | None = None) -> TaskChange:
        """Delete the task holding ``key`` (in ``queue`` when given), freeing the key.
        Raises :class:`TaskNotFound`, or :class:`TaskNotWaiting` for a running task."""
        ...

    async def force_unlock(self, worker_ids: Sequence[str]) -> dict[str, list[int]]:
        """Give the tasks leased by these workers back to the queue, as :meth:`release`
        does (ready at once, the interrupted attempt not counted), whether or not the
        workers are alive; their registrations stay. Returns the ids released, by worker
        (workers holding nothing are left out)."""
        ...

    # --- dead-letter queue --------------------------------------------------------------

    async def list_dead(self, filter: DeadFilter, *, limit: int, offset: int) -> Page[Task]:
        """Dead tasks matching ``filter``, most recently dead first, with the total."""
        ...

    async def replay_dead(self, task_ids: Sequence[int], *, actor: str) -> list[int]:
        """Make the given dead tasks ready now with ``attempts`` reset to 0, recording
        ``actor`` in ``replayed_by`` and the time in ``replayed_at`` and incrementing
        ``replay_count``. Returns the ids replayed (ids not dead are ignored)."""
        ...

    async def replay_dead_matching(
        self, filter: DeadFilter, *, limit: int, actor: str
    ) -> list[int]:
        """Replay (as :meth:`replay_dead`) up to ``limit`` dead tasks matching ``filter``,
        oldest dead first. Returns the ids replayed."""
        ...

    async def delete_dead(self, task_ids: Sequence[int]) -> int:
        """Delete the given dead tasks; return how many were deleted."""
        ...

    async def delete_dead_by_key(self, key: str) -> int:
        """Delete the dead tasks holding ``key``, and those that held it until a newer
        task was enqueued with it (taking the key over); return how many were deleted."""
        ...

    async def purge_dead(self, older_than: datetime) -> int:
        """Delete every dead task dead-lettered before ``older_than``; return the count."""
        ...

    async def dead_preview(self, filter: DeadFilter, *, limit: int | None) -> dict[str, int]:
        """How many dead tasks, by queue, :meth:`replay_dead_matching` with ``filter`` and
        ``limit`` (``None``: all, as a purge) would take now; changes nothing."""
        ...

    async def dead_stats(self) -> DeadStats:
        """Counts of the dead-letter queue, by queue and by handler."""
        ...

    # --- queues ---------------------------------------------------------------------------

    async def list_queues(self) -> list[QueueInfo]:
        """Every known queue (one that ever had a task or a setting), by name."""
        ...

    async def get_queue(self, name: str) -> QueueInfo | None:
        """One queue, or ``None`` if it was never seen."""
        ...

    async def set_queue_paused(self, name: str, paused: bool) -> QueueInfo:
        """Pause or resume claims from a queue (created if new). Persisted and seen by
        every worker on its next claim."""
        ...

    async def set_queue_weight(self, name: str, weight: int) -> QueueInfo:
        """Override a queue's weight (1-1000; created if new)."""
        ...

    async def reset_queue_weight(self, name: str) -> QueueInfo:
        """Drop the override so the queue's configured default weight applies again
        (an unknown queue is created with its default)."""
        ...

    async def set_queue_concurrency(self, name: str, limit: int | None) -> QueueInfo:
        """Cap how many tasks of this queue run at once across all workers (``None`` = no
        cap, 1 = serial)."""
        ...

    async def set_default_weights(self, weights: Mapping[str, int]) -> None:
        """Set the configured default weight of the named queues (creating them); queues
        not named keep theirs (1 unless set). Overrides are untouched."""
        ...

    async def set_global_paused(self, paused: bool) -> None:
        """Pause or resume dequeue for every queue. Persisted."""
        ...

    async def is_global_paused(self) -> bool:
        """Whether dequeue is paused globally."""
        ...

    # --- workers --------------------------------------------------------------------------

    async def register_worker(self, info: WorkerInfo) -> None:
        """Record (or refresh) a live worker; its heartbeat is now."""
        ...

    async def deregister_worker(self, worker_id: str) -> None:
        """Remove a worker's registration and release (as :meth:`release`) any lease it
        still holds."""
        ...

    async def list_workers(self) -> list[WorkerRecord]:
        """Registered workers with their last heartbeat and number of running tasks."""
        ...

    async def sweep_stale_workers(self, older_than: timedelta) -> list[str]:
        """Remove workers whose heartbeat is older than ``older_than`` and make their
        running tasks waiting again (as :meth:`reclaim_expired` does for expired leases).
        Returns the ids of the removed workers."""
        ...

    # --- maintenance ----------------------------------------------------------------------

    async def purge_done(self, older_than: datetime) -> int:
        """Delete ``done`` tasks (retained only for their keys) completed before
        ``older_than``; return the count."""
        ...

    async def purge_expired_keys(self) -> int:
        """:meth:`purge_done` of the ``done`` tasks whose key retention is over (they no
        longer deduplicate anything); return the count."""
        ...

    async def gc_queues(self) -> list[str]:
        """Forget the queues that hold no task in any state and carry no setting (not
        paused, no weight override or configured weight, no concurrency limit); their
        cumulative counters go with them. Safe against a concurrent enqueue into one of
        them. Returns the names removed."""
        ...

    async def close(self) -> None:
        """Release what the queue object itself holds (listener connections, waiters);
        the database it was built on stays open and is closed by its owner."""
        ...

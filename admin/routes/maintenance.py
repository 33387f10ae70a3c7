"""Seed 004's maintenance operations, mapped onto Longshore's queue.

- ``cleanup``: what graphile_worker's cleanup does that has a meaning here. ``expired-keys``
  deletes the ``done`` tasks kept only for their idempotency key once its retention is
  over (they deduplicate nothing any more; the service also does this periodically);
  ``empty-queues`` forgets queues holding no task in any state and carrying no setting
  (graphile's ``gc-job-queues``), with their counters. Graphile's
  ``delete-permanently-failed-jobs`` is the dead-letter purge (``POST /dlq/purge``), and
  task identifiers are not stored, so there is nothing like ``gc-task-identifiers``.
- ``force-unlock``: the tasks leased by the named workers go back to the queue (ready at
  once, the interrupted attempt not counted), whether or not those workers still run: for
  workers known to be gone whose leases have not expired yet. A worker that is in fact alive
  may then finish an attempt another worker also runs.
- ``sweep-stale-workers``: removes the workers whose last heartbeat is older than
  ``olderThanSeconds`` (default: the service's ``WORKER_STALE_WORKER_SECONDS`` rule) and makes
  their running tasks waiting again, as the service's own sweep does; ``dryRun`` only lists
  them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends

from admin.config import Role
from admin.deps import ConfigDep, QueueDep
from admin.mutations import Mutation, mutation
from admin.schemas import WorkerBody
from admin.schemas_tasks import (
    CleanupRequest,
    CleanupResult,
    ForceUnlockRequest,
    ForceUnlockResult,
    SweepRequest,
    SweepResult,
)

router = APIRouter(prefix="/maintenance", tags=["maintenance"])

Cleanup = Annotated[
    Mutation,
    Depends(mutation("maintenance.cleanup", Role.ADMIN, fixed_target="queue", risky=True)),
]
ForceUnlock = Annotated[
    Mutation,
    Depends(mutation("maintenance.force_unlock", Role.ADMIN, fixed_target="workers", risky=True)),
]
Sweep = Annotated[
    Mutation,
    Depends(
        mutation(
            "maintenance.sweep_stale_workers", Role.OPERATOR, fixed_target="workers", risky=True
        )
    ),
]

CLEANUPS = ("expired-keys", "empty-queues")


@router.post("/cleanup", response_model=CleanupResult)
async def cleanup(
    audit: Cleanup, queue: QueueDep, body: CleanupRequest | None = None
) -> CleanupResult:
    """Run the named cleanups (default: all): ``expired-keys`` deletes done tasks whose key
    retention is over, ``empty-queues`` forgets queues with no task and no setting."""
    wanted = [name for name in CLEANUPS if body is None or body.tasks is None or name in body.tasks]
    expired = await queue.purge_expired_keys() if "expired-keys" in wanted else 0
    removed = await queue.gc_queues() if "empty-queues" in wanted else []
    await audit.ok(f"tasks={','.join(wanted)} expiredKeys={expired} queuesRemoved={len(removed)}")
    return CleanupResult(tasks=wanted, expired_keys_deleted=expired, queues_removed=removed)


@router.post("/force-unlock", response_model=ForceUnlockResult)
async def force_unlock(
    body: ForceUnlockRequest, audit: ForceUnlock, queue: QueueDep
) -> ForceUnlockResult:
    """Give the tasks leased by ``workerIds`` back to the queue (ready at once, the
    interrupted attempt not counted); the workers' registrations stay."""
    released = await queue.force_unlock(body.worker_ids)
    total = sum(len(ids) for ids in released.values())
    await audit.ok(f"workers={len(set(body.worker_ids))} released={total}")
    return ForceUnlockResult(
        released=total,
        by_worker={worker: [str(i) for i in ids] for worker, ids in released.items()},
    )


@router.post("/sweep-stale-workers", response_model=SweepResult)
async def sweep_stale_workers(
    audit: Sweep, queue: QueueDep, config: ConfigDep, body: SweepRequest | None = None
) -> SweepResult:
    """Remove the workers whose heartbeat is older than ``olderThanSeconds`` and make their
    running tasks waiting again; with ``dryRun``, only say which (nothing changes)."""
    body = body or SweepRequest()
    seconds = body.older_than_seconds or max(1, round(config.stale_worker_seconds))
    cutoff = datetime.now(UTC) - timedelta(seconds=seconds)
    records = {record.info.worker_id: record for record in await queue.list_workers()}
    if body.dry_run:
        stale = [record for record in records.values() if record.heartbeat_at < cutoff]
    else:
        swept = await queue.sweep_stale_workers(timedelta(seconds=seconds))
        stale = [records[worker] for worker in swept if worker in records]
    stale.sort(key=lambda record: record.info.worker_id)
    tasks = sum(record.running for record in stale)
    await audit.ok(f"dryRun={str(body.dry_run).lower()} workers={len(stale)} tasks={tasks}")
    return SweepResult(
        dry_run=body.dry_run,
        older_than_seconds=seconds,
        workers=[WorkerBody.of(record) for record in stale],
        tasks=tasks,
    )

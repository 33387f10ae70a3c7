"""The dead-letter queue: list, stats, detail, replay (bounded, by filter or by ids),
delete, purge. Replays and the purge take ``dryRun: true`` to preview their impact
(:class:`~admin.schemas_tasks.DeadPreview`: how many tasks, by queue) without changing
anything; a preview is checked (role, caps) and audited like the real call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query

from admin.auth import RequireViewer
from admin.config import Role
from admin.deps import ConfigDep, QueueDep
from admin.errors import GuardrailExceeded, InvalidRequest, NotFound
from admin.mutations import Mutation, mutation
from admin.schemas import (
    MAX_INT,
    DeadEntry,
    DeadEntryDetail,
    DeadList,
    DeadOne,
    DeadStatsBody,
    DeadStatsOne,
    DeleteResult,
    ErrorBody,
    PurgeRequest,
    PurgeResult,
    ReplayIdsRequest,
    ReplayRequest,
    ReplayResult,
)
from admin.schemas_tasks import DeadPreview
from store.queue.models import DeadFilter, TaskState

router = APIRouter(prefix="/dlq", tags=["dlq"])

Replay = Annotated[
    Mutation, Depends(mutation("dlq.replay", Role.OPERATOR, fixed_target="dlq", risky=True))
]
ReplayIds = Annotated[
    Mutation, Depends(mutation("dlq.replay_ids", Role.OPERATOR, fixed_target="dlq", risky=True))
]
Delete = Annotated[
    Mutation, Depends(mutation("dlq.delete", Role.ADMIN, target="task_id", risky=True))
]
Purge = Annotated[
    Mutation, Depends(mutation("dlq.purge", Role.ADMIN, fixed_target="dlq", risky=True))
]

CAPPED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorBody, "description": "Above the replay cap"}
}

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]
TaskIdPath = Annotated[int, Path(ge=1, le=MAX_INT)]


@router.get("", response_model=DeadList)
async def list_dead(
    _: RequireViewer,
    queue: QueueDep,
    limit: Limit = 100,
    offset: Offset = 0,
    queue_name: Annotated[str | None, Query(alias="queue")] = None,
    handler: str | None = None,
    query: str | None = None,
) -> DeadList:
    """Dead tasks, most recently dead first; ``query`` searches handler, key, error and
    payload."""
    page = await queue.list_dead(
        DeadFilter(queue=queue_name, handler=handler, search=query), limit=limit, offset=offset
    )
    return DeadList(
        entries=[DeadEntry.of(task) for task in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.get("/stats", response_model=DeadStatsOne)
async def dead_stats(_: RequireViewer, queue: QueueDep) -> DeadStatsOne:
    return DeadStatsOne(stats=DeadStatsBody.of(await queue.dead_stats()))


@router.get("/{task_id}", response_model=DeadOne)
async def get_dead(task_id: TaskIdPath, _: RequireViewer, queue: QueueDep) -> DeadOne:
    task = await queue.get_task(task_id)
    if task is None or task.state is not TaskState.DEAD:
        raise NotFound(f"dead-letter entry {task_id} not found")
    return DeadOne(entry=DeadEntryDetail.of(task))


@router.post("/replay", response_model=ReplayResult | DeadPreview, responses=CAPPED)
async def replay(
    audit: Replay, queue: QueueDep, config: ConfigDep, body: ReplayRequest | None = None
) -> ReplayResult | DeadPreview:
    """Replay up to ``limit`` dead tasks (oldest dead first), optionally filtered; a limit
    above ``WORKER_ADMIN_REPLAY_LIMIT_MAX`` is refused with 429. With ``dryRun``, answers
    how many it would replay, by queue (a DeadPreview), and replays nothing."""
    body = body or ReplayRequest()
    limit = body.limit if body.limit is not None else min(100, config.replay_limit_max)
    if limit > config.replay_limit_max:
        raise GuardrailExceeded(
            f"limit {limit} is above the replay cap of {config.replay_limit_max}",
            code="replay_limit_exceeded",
        )
    matching = DeadFilter(queue=body.queue, handler=body.handler, search=body.query)
    if body.dry_run:
        return await _preview(audit, "replay", await queue.dead_preview(matching, limit=limit))
    ids = await queue.replay_dead_matching(matching, limit=limit, actor=audit.actor)
    await audit.ok(f"replayed={len(ids)}")
    return ReplayResult(replayed=len(ids), moved=len(ids), ids=[str(i) for i in ids])


@router.post("/replay/ids", response_model=ReplayResult | DeadPreview, responses=CAPPED)
async def replay_ids(
    body: ReplayIdsRequest, audit: ReplayIds, queue: QueueDep, config: ConfigDep
) -> ReplayResult | DeadPreview:
    """Replay the given dead tasks; more ids than ``WORKER_ADMIN_REPLAY_IDS_MAX`` is 429.
    Ids that are not dead are ignored (the answer lists those replayed). With ``dryRun``,
    answers how many of them are dead, by queue (a DeadPreview), and replays nothing."""
    if len(body.ids) > config.replay_ids_max:
        raise GuardrailExceeded(
            f"{len(body.ids)} ids is above the replay cap of {config.replay_ids_max}",
            code="replay_ids_exceeded",
        )
    task_ids: list[int] = []
    for index, raw in enumerate(body.ids):
        # ASCII digits only: ``int`` would also take " 1", "1_0" or other scripts' digits.
        if isinstance(raw, str) and not (raw.isascii() and raw.isdigit() and len(raw) < 20):
            raise InvalidRequest(f"ids[{index}]: {raw!r} is not a task id")
        task_id = int(raw)
        if 1 <= task_id <= MAX_INT:  # no task has any other id: ignored like any not dead
            task_ids.append(task_id)
    if body.dry_run:
        counts: dict[str, int] = {}
        for task_id in dict.fromkeys(task_ids):
            task = await queue.get_task(task_id)
            if task is not None and task.state is TaskState.DEAD:
                counts[task.queue] = counts.get(task.queue, 0) + 1
        return await _preview(audit, "replay", dict(sorted(counts.items())))
    ids = await queue.replay_dead(task_ids, actor=audit.actor)
    await audit.ok(f"requested={len(task_ids)} replayed={len(ids)}")
    return ReplayResult(replayed=len(ids), moved=len(ids), ids=[str(i) for i in ids])


@router.delete("/{task_id}", response_model=DeleteResult)
async def delete_dead(task_id: TaskIdPath, audit: Delete, queue: QueueDep) -> DeleteResult:
    deleted = await queue.delete_dead([task_id])
    if not deleted:
        raise NotFound(f"dead-letter entry {task_id} not found")
    await audit.ok("deleted=1")
    return DeleteResult(deleted=deleted)


@router.post("/purge", response_model=PurgeResult | DeadPreview)
async def purge_dead(
    audit: Purge, queue: QueueDep, body: PurgeRequest | None = None
) -> PurgeResult | DeadPreview:
    """Delete every dead task dead for at least ``olderThanSeconds`` (default: all). With
    ``dryRun``, answers how many it would delete, by queue (a DeadPreview), and deletes
    nothing."""
    body = body or PurgeRequest()
    cutoff = datetime.now(UTC) - timedelta(seconds=body.older_than_seconds)
    # A cutoff a little in the future also takes entries dead-lettered this millisecond.
    if body.older_than_seconds == 0:
        cutoff += timedelta(seconds=1)
    if body.dry_run:
        counts = await queue.dead_preview(DeadFilter(dead_before=cutoff), limit=None)
        return await _preview(audit, "purge", counts)
    purged = await queue.purge_dead(cutoff)
    await audit.ok(f"purged={purged} olderThanSeconds={body.older_than_seconds}")
    return PurgeResult(purged=purged)


async def _preview(
    audit: Mutation, action: Literal["replay", "purge"], counts: dict[str, int]
) -> DeadPreview:
    total = sum(counts.values())
    await audit.ok(f"dryRun=true would{action.capitalize()}={total}")
    return DeadPreview(action=action, total=total, by_queue=counts)

"""Queues: list, detail, weight override and reset, pause/resume of one queue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from admin.auth import RequireViewer
from admin.config import Role
from admin.deps import QueueDep
from admin.errors import NotFound
from admin.mutations import Mutation, mutation
from admin.schemas import PausedRequest, QueueBody, QueueList, QueueOne, WeightRequest
from store.queue.models import check_queue_name

router = APIRouter(prefix="/queues", tags=["queues"])

UpdateWeight = Annotated[
    Mutation, Depends(mutation("queue.update_weight", Role.ADMIN, target="name"))
]
ResetWeight = Annotated[
    Mutation, Depends(mutation("queue.reset_weight", Role.ADMIN, target="name"))
]
PauseQueue = Annotated[
    Mutation, Depends(mutation("queue.pause", Role.OPERATOR, target="name", risky=True))
]


@router.get("", response_model=QueueList)
async def list_queues(_: RequireViewer, queue: QueueDep) -> QueueList:
    queues = [QueueBody.of(info) for info in await queue.list_queues()]
    return QueueList(queues=queues, total=len(queues))


@router.get("/{name}", response_model=QueueOne)
async def get_queue(name: str, _: RequireViewer, queue: QueueDep) -> QueueOne:
    info = await queue.get_queue(name)
    if info is None:
        raise NotFound(f"queue {name!r} not found")
    return QueueOne(queue=QueueBody.of(info))


@router.post("/{name}/weight", response_model=QueueOne)
async def update_weight(
    name: str, body: WeightRequest, audit: UpdateWeight, queue: QueueDep
) -> QueueOne:
    """Override the queue's weight (1-1000); a queue not seen yet is created."""
    info = await queue.set_queue_weight(check_queue_name(name), body.weight)
    await audit.ok(f"weight={info.weight}")
    return QueueOne(queue=QueueBody.of(info))


@router.delete("/{name}/weight", response_model=QueueOne)
async def reset_weight(name: str, audit: ResetWeight, queue: QueueDep) -> QueueOne:
    """Drop the override: the configured default weight applies again."""
    info = await queue.reset_queue_weight(check_queue_name(name))
    await audit.ok(f"weight={info.weight}")
    return QueueOne(queue=QueueBody.of(info))


@router.post("/{name}/pause", response_model=QueueOne)
async def pause_queue(
    name: str, body: PausedRequest, audit: PauseQueue, queue: QueueDep
) -> QueueOne:
    """Pause (``{"paused": true}``) or resume (``false``) claims from one queue."""
    info = await queue.set_queue_paused(check_queue_name(name), body.paused)
    await audit.ok(f"paused={str(info.paused).lower()}")
    return QueueOne(queue=QueueBody.of(info))

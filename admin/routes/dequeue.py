"""``POST /pause`` and ``POST /resume``: global dequeue pause (an empty body is accepted)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from admin.config import Role
from admin.deps import QueueDep
from admin.mutations import Mutation, mutation
from admin.schemas import DequeueState

router = APIRouter(tags=["dequeue"])

PauseDequeue = Annotated[
    Mutation, Depends(mutation("dequeue.pause", Role.OPERATOR, fixed_target="*", risky=True))
]
ResumeDequeue = Annotated[
    Mutation, Depends(mutation("dequeue.resume", Role.OPERATOR, fixed_target="*"))
]


@router.post("/pause", response_model=DequeueState)
async def pause(audit: PauseDequeue, queue: QueueDep) -> DequeueState:
    """Stop every worker from claiming tasks (running tasks finish)."""
    await queue.set_global_paused(True)
    await audit.ok("paused=true")
    return DequeueState(paused=True)


@router.post("/resume", response_model=DequeueState)
async def resume(audit: ResumeDequeue, queue: QueueDep) -> DequeueState:
    await queue.set_global_paused(False)
    await audit.ok("paused=false")
    return DequeueState(paused=False)

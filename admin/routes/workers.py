"""``GET /workers``: live workers and their heartbeats."""

from __future__ import annotations

from fastapi import APIRouter

from admin.auth import RequireViewer
from admin.deps import QueueDep
from admin.schemas import WorkerBody, WorkerList

router = APIRouter(tags=["workers"])


@router.get("/workers", response_model=WorkerList)
async def list_workers(_: RequireViewer, queue: QueueDep) -> WorkerList:
    workers = [WorkerBody.of(record) for record in await queue.list_workers()]
    return WorkerList(workers=workers, total=len(workers))

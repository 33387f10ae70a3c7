"""``GET /health``: service health and build information."""

from __future__ import annotations

import platform

from fastapi import APIRouter

from admin.auth import RequireViewer
from admin.deps import ConfigDep, QueueDep
from admin.schemas import HealthBody

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthBody)
async def health(_: RequireViewer, queue: QueueDep, config: ConfigDep) -> HealthBody:
    return HealthBody(
        status="ok",
        version=config.version,
        commit=config.commit,
        build_time=config.build_time,
        python_version=platform.python_version(),
        go_version=f"python {platform.python_version()}",
        dequeue_paused=await queue.is_global_paused(),
    )

"""``Annotated`` dependencies for routes: the collaborators handed to ``create_app``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from admin.auth import config_of
from admin.config import AdminConfig
from store.queue.protocol import TaskQueue


def _queue(request: Request) -> TaskQueue:
    queue: TaskQueue = request.app.state.admin_queue
    return queue


QueueDep = Annotated[TaskQueue, Depends(_queue)]
ConfigDep = Annotated[AdminConfig, Depends(config_of)]

"""Longshore as a Python library: its durable queue, workers, schedules and admin API in
your own application (docs/library.md).

::

    import longshore

    registry = longshore.Registry()

    @registry.handler("send_email")
    async def send_email(payload: SendEmail, ctx: longshore.Context) -> None: ...

    async with longshore.Client(url) as client:
        await client.enqueue_fast("send_email", SendEmail(to="a@example.com"))
        await longshore.Worker(client, registry).run_until_idle()

This package only composes and re-exports; the queue (``store``), the worker
(``service.worker``), the scheduler and the admin API stay where they are.
"""

from longshore.admin import AdminConfig, AdminMount, admin_app
from longshore.client import Client
from longshore.context import Context
from longshore.errors import InvalidPayload, LibraryError
from longshore.handlers import Plugin, Registry, TypedHandler
from longshore.hooks import CronTick, Hook, TaskEvent
from longshore.plugins import DlqCleanup
from longshore.tasks import new_task
from longshore.worker import Worker
from store.errors import (
    InvalidTask,
    LongshoreError,
    PermanentFailure,
    StoreUnavailable,
    TaskNotFound,
    TaskNotWaiting,
)
from store.queue.models import (
    DeadStats,
    EnqueueOutcome,
    EnqueueResult,
    KeyMode,
    NewTask,
    Page,
    Priority,
    Task,
    TaskState,
)
from store.queue.retry import RetryPolicy

__all__ = [
    "AdminConfig",
    "AdminMount",
    "Client",
    "Context",
    "CronTick",
    "DeadStats",
    "DlqCleanup",
    "EnqueueOutcome",
    "EnqueueResult",
    "Hook",
    "InvalidPayload",
    "InvalidTask",
    "KeyMode",
    "LibraryError",
    "LongshoreError",
    "NewTask",
    "Page",
    "PermanentFailure",
    "Plugin",
    "Priority",
    "Registry",
    "RetryPolicy",
    "StoreUnavailable",
    "Task",
    "TaskEvent",
    "TaskNotFound",
    "TaskNotWaiting",
    "TaskState",
    "TypedHandler",
    "Worker",
    "admin_app",
    "new_task",
]

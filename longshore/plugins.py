"""Built-in plugins.

:class:`DlqCleanup` (backfill's DLQ cleanup plugin): when a task with an idempotency key
completes, the dead-letter entries of that key are deleted: the work they stood for has
now been done, so nobody should replay them. A dead task keeps its key in the database
even after a newer task took the key over (``TaskQueue.delete_dead_by_key``).
"""

from __future__ import annotations

import logging

from longshore.handlers import Registry
from longshore.hooks import Hook, TaskEvent

__all__ = ["DlqCleanup"]

logger = logging.getLogger(__name__)


class DlqCleanup:
    """Deletes the dead-letter entries of a key once a task with that key completed.

    ``registry.use(longshore.DlqCleanup())``. Best effort: a failed delete is logged by
    the hook machinery and never touches the completed task.
    """

    def register(self, registry: Registry) -> None:
        registry.add_hook(Hook.COMPLETED, self.on_completed)

    async def on_completed(self, event: TaskEvent) -> None:
        key = event.task.key
        if key is None:
            return
        deleted = await event.client.delete_dead_by_key(key)
        if deleted:
            logger.info(
                "dead-letter entries of a completed key deleted",
                extra={"key": key, "deleted": deleted, "task_id": event.task.id},
            )

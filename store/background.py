"""One way to own a background task: named, its failure logged, awaited on shutdown.

Every long-lived ``asyncio`` task in Longshore is started through a :class:`TaskOwner`, so
none is left unnamed, none dies silently and none outlives the component that started it::

    async with TaskOwner("worker") as tasks:
        tasks.spawn(self._heartbeat_loop(), name="worker-heartbeat")
        ...
    # leaving the block cancels what is still running and awaits all of it

A task that ends with an exception (other than cancellation) is logged once, with its name,
when it ends; :meth:`TaskOwner.close` never raises it again, because the owner's own
shutdown must not be derailed by a background failure that was already reported. Code that
needs a task's result awaits the returned task itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class TaskOwner:
    """Owns background tasks: :meth:`spawn` starts one, :meth:`close` cancels and awaits
    every task still running. Usable as an async context manager."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Start ``coro`` as a task called ``name``; its exception, if any, is logged when
        it ends. Raises ``RuntimeError`` once the owner is closed."""
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self._owner}: cannot start {name!r} after shutdown")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error(
                "background task failed",
                exc_info=exc,
                extra={"owner": self._owner, "task": task.get_name()},
            )

    async def close(self, *, cancel: bool = True) -> None:
        """Stop accepting tasks, cancel the running ones (unless ``cancel`` is false: then
        wait for them to end by themselves) and await them all."""
        self._closed = True
        while self._tasks:
            pending = list(self._tasks)
            if cancel:
                for task in pending:
                    task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in pending:
                self._tasks.discard(task)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

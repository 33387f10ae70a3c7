"""What a typed handler receives beside its payload."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from store.queue.models import Task

if TYPE_CHECKING:
    from longshore.client import Client

__all__ = ["Context"]

RenewLease = Callable[[int], Awaitable[bool]]
"""Renews this worker's leases now; says whether the given task is still leased to it."""


class CancelSignals(Protocol):
    """Hands out ``cancelled`` events that the worker sets when it stops."""

    def new(self) -> asyncio.Event: ...

    def discard(self, event: asyncio.Event) -> None: ...


class Context:
    """The running task, its worker and a cancellation signal.

    ``cancelled`` is set when the worker is stopping (its grace period has started: finish
    or checkpoint soon, the task is cancelled when the grace period ends) or when
    :meth:`extend_lease` found the lease lost (another worker may run the task now). Sync
    handlers run in a thread and may poll ``cancelled.is_set()`` from there.
    """

    __slots__ = ("_cancelled", "_renew", "_signals", "client", "task", "worker_id")

    def __init__(
        self,
        *,
        task: Task,
        worker_id: str,
        client: Client,
        signals: CancelSignals,
        renew: RenewLease,
    ) -> None:
        self.task = task
        """The task as claimed (its payload as stored, before validation)."""
        self.worker_id = worker_id
        self.client = client
        """The worker's client, e.g. to enqueue follow-up work."""
        self._signals = signals
        self._renew = renew
        self._cancelled: asyncio.Event | None = None

    @property
    def cancelled(self) -> asyncio.Event:
        """Set when the worker stops or the lease was found lost (see the class)."""
        # Made on first use: most handlers never look, and a run should not pay for it.
        if self._cancelled is None:
            self._cancelled = self._signals.new()
        return self._cancelled

    def release(self) -> None:
        """The handler has returned: its ``cancelled`` event is no longer tracked."""
        if self._cancelled is not None:
            self._signals.discard(self._cancelled)

    @property
    def task_id(self) -> int:
        return self.task.id

    @property
    def attempt(self) -> int:
        """This attempt's number, 1 for the first."""
        return self.task.attempts

    @property
    def max_attempts(self) -> int:
        return self.task.max_attempts

    @property
    def queue(self) -> str:
        return self.task.queue

    @property
    def handler(self) -> str:
        return self.task.handler

    @property
    def key(self) -> str | None:
        return self.task.key

    @property
    def run_at(self) -> datetime:
        return self.task.run_at

    async def extend_lease(self) -> bool:
        """Renew the lease now, for long work that may starve the event loop between the
        worker's own renewals (every third of the lease). Returns whether the task is still
        leased to this worker; if not, sets :attr:`cancelled`: another worker may already
        be running it, so stop and do not write results."""
        held = await self._renew(self.task.id)
        if not held:
            self.cancelled.set()
        return held

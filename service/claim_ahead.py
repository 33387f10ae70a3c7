"""Claiming ahead: how many tasks a worker may claim beyond its free slots, and holding them.

While handlers finish quickly (a deep queue of short tasks), claiming only as many tasks as
slots are free costs a round trip for every few tasks. A worker then claims ahead, into a
small buffer of claimed tasks that start as slots free up (the heartbeat renews their leases
like any other). The allowance is the number of tasks this worker finished in the last
:data:`HORIZON` (capped by the claim batch), so a buffered task waits about that long before
it starts, and a worker running long tasks (container runs) claims nothing ahead and leaves
the queue to other workers. If the tasks ahead still wait for a slot after
:data:`HOLD_AHEAD`, the worker gives them back.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from store.queue.models import Task

HORIZON = 0.05
"""Seconds of work a worker may hold claimed ahead of its free slots."""

HOLD_AHEAD = 0.5
"""Seconds a task claimed ahead may wait for a slot before it is given back to the queue
(its attempt uncounted): the short tasks were followed by long ones."""


class ClaimAhead:
    """The tasks claimed ahead, and the pace that decides how many; see the module docstring."""

    def __init__(
        self,
        *,
        batch: int,
        horizon: float = HORIZON,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._batch = batch
        self._horizon = horizon
        self._clock = clock
        self._tasks: deque[Task] = deque()
        self._window_start = clock()
        self._in_window = 0
        self._last_window = 0
        self._claimed_at = 0.0

    def __len__(self) -> int:
        return len(self._tasks)

    def want(self, free: int) -> int:
        """How many tasks to claim now with ``free`` slots: none while tasks claimed ahead
        wait (one larger claim once they have all started, not a top-up per freed slot)."""
        if self._tasks:
            return 0
        return min(free + self._allowance(), self._batch)

    def add(self, tasks: list[Task]) -> None:
        """Tasks just claimed, to start as slots allow."""
        self._tasks.extend(tasks)
        self._claimed_at = self._clock()

    def take(self, count: int) -> list[Task]:
        """Up to ``count`` tasks to start now, oldest claim first."""
        tasks = self._tasks
        return [tasks.popleft() for _ in range(min(count, len(tasks)))]

    def finished(self) -> None:
        """One task finished (whatever its verdict)."""
        self._in_window += 1

    def held_too_long(self) -> bool:
        """Tasks wait and the last claim is older than :data:`HOLD_AHEAD`."""
        return bool(self._tasks) and self._clock() - self._claimed_at >= HOLD_AHEAD

    def ids(self) -> list[int]:
        return [task.id for task in self._tasks]

    def clear(self) -> None:
        self._tasks.clear()

    def _allowance(self) -> int:
        now = self._clock()
        elapsed = now - self._window_start
        if elapsed >= self._horizon:
            # A window with no finish at all (an idle or slow worker) ends the allowance.
            self._last_window = self._in_window if elapsed < 2 * self._horizon else 0
            self._window_start, self._in_window = now, 0
        return min(self._batch, max(self._last_window, self._in_window))

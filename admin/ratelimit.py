"""A sliding-window rate cap per key, held in memory by one process (the run-now cap of
``POST /schedules/{name}/run``: ``WORKER_ADMIN_SCHEDULE_RUN_MAX`` per
``WORKER_ADMIN_SCHEDULE_RUN_WINDOW``).

Every call of :meth:`SlidingWindow.acquire` that is allowed is remembered for ``window``
seconds; a key with ``limit`` remembered calls refuses the next one until the oldest
expires. The state is not shared between processes or kept across restarts. Methods never
await, so on one event loop an acquire cannot interleave with another.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["SlidingWindow"]

_SWEEP_ABOVE = 1024
"""Keys held before an acquire drops every key whose calls have all expired."""


class SlidingWindow:
    """At most ``limit`` acquisitions per key within any ``window`` seconds."""

    def __init__(
        self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if not window > 0:
            raise ValueError(f"window must be positive, got {window}")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}

    def acquire(self, key: str) -> float | None:
        """Take one call of ``key``'s allowance: ``None`` when allowed (and remembered),
        otherwise the seconds until the oldest remembered call expires (nothing is taken)."""
        now = self._clock()
        if len(self._calls) > _SWEEP_ABOVE:
            self._sweep(now)
        calls = self._calls.get(key)
        if calls is None:
            calls = self._calls[key] = deque()
        self._expire(calls, now)
        if len(calls) >= self.limit:
            return max(calls[0] + self.window - now, 0.0)
        calls.append(now)
        return None

    def release(self, key: str) -> None:
        """Give back the latest call of ``key`` (one that turned out not to count, e.g. for
        a schedule that does not exist)."""
        calls = self._calls.get(key)
        if calls:
            calls.pop()
        if not calls:
            self._calls.pop(key, None)

    def used(self, key: str) -> int:
        """Calls of ``key`` remembered now."""
        calls = self._calls.get(key)
        if calls is None:
            return 0
        self._expire(calls, self._clock())
        return len(calls)

    def __len__(self) -> int:
        """Keys held (including some whose calls have expired but were not swept yet)."""
        return len(self._calls)

    def _expire(self, calls: deque[float], now: float) -> None:
        horizon = now - self.window
        while calls and calls[0] <= horizon:
            calls.popleft()

    def _sweep(self, now: float) -> None:
        for key in list(self._calls):
            calls = self._calls[key]
            self._expire(calls, now)
            if not calls:
                del self._calls[key]

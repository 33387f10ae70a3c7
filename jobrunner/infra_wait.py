"""Waiting out infrastructure faults on their own budget, not on the job's ``retries``.

An unreachable Docker engine (:class:`EngineUnavailable`), a network or registry fault
(:class:`FetchFailed`: a download, a clone, a base-image pull that failed or timed out) and
a full disk under the artifact store (``ENOSPC``/``EDQUOT``) say nothing about the job: the
step that met one is tried again, with backoff (1 s doubling to :data:`MAX_DELAY`), inside
the same attempt and the same run, until it passes or the attempt has waited
``budget`` seconds in all (``WORKER_INFRA_RETRY_SECONDS``); only then does the fault fail
the attempt like any other error (which spends one of the job's ``retries``). A job's own
failure (non-zero exit, timeout) is never waited on.

While it waits, the run keeps its status; each wait is told by a ``RunWaiting`` event
(``detail``: ``waiting for the engine``, ``waiting for the network`` or ``waiting for disk
space``) and counted by :class:`InfraWaits` (the ``longshore_runs_waiting`` metric). A
cancel of the run ends the wait at once (:class:`WaitCancelled`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from jobrunner.errors import (
    EngineUnavailable,
    FetchFailed,
    InfrastructureError,
    WaitCancelled,
    describe,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

INFRA_RETRY_SECONDS = 600.0
"""How long one attempt may wait for its infrastructure by default: an engine restart, a
registry or network outage of a few minutes is ridden out."""
FIRST_DELAY = 1.0
MAX_DELAY = 15.0
"""The longest pause between two tries: a waiting run notices within this much that the
engine is back."""

ENGINE = "engine"
NETWORK = "network"
DISK = "disk"
DETAILS = {
    ENGINE: "waiting for the engine",
    NETWORK: "waiting for the network",
    DISK: "waiting for disk space",
}
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def infra_fault(exc: BaseException) -> str | None:
    """What an error waits for (:data:`ENGINE`, :data:`NETWORK`, :data:`DISK`), or ``None``
    when it is not an infrastructure fault."""
    if isinstance(exc, EngineUnavailable):
        return ENGINE
    if isinstance(exc, FetchFailed):
        return NETWORK
    if isinstance(exc, InfrastructureError):
        return ENGINE
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return DISK
    return None


@dataclass
class InfraWaits:
    """The budget of every attempt, and what this process's attempts wait for (metrics)."""

    budget: float = INFRA_RETRY_SECONDS
    max_delay: float = MAX_DELAY
    waiting: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DETAILS, 0))
    """Attempts waiting now, by what they wait for."""
    waits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DETAILS, 0))
    """Waits begun since the process started, by what they waited for."""
    exhausted: int = 0
    """Attempts that used up their budget (and failed with the fault)."""


WaitNotice = Callable[[str, BaseException, float, float], Awaitable[None]]
"""Told of each wait: ``(kind, fault, seconds until the next try, seconds waited so far)``."""


class PatientAttempt:
    """Runs the steps of one attempt, waiting out their infrastructure faults (see the module
    docstring). ``waited`` is the time spent waiting so far (the job's deadline is moved by
    it: waiting for the engine is not the job's time)."""

    def __init__(self, waits: InfraWaits, cancel: asyncio.Event, notice: WaitNotice) -> None:
        self._waits = waits
        self._cancel = cancel
        self._notice = notice
        self.waited = 0.0

    async def call(
        self,
        step: Callable[[], Awaitable[T]],
        *,
        before_retry: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """``step()``'s result, tried again after each infrastructure fault while the budget
        lasts; ``before_retry`` undoes what a failed try left (it may fault too, and is
        waited on like the step)."""
        failures = 0
        retrying = False
        while True:
            try:
                if retrying and before_retry is not None:
                    await before_retry()
                return await step()
            except Exception as exc:
                kind = infra_fault(exc)
                if kind is None:
                    raise
                delay = min(self._waits.max_delay, FIRST_DELAY * 2**failures)
                delay = min(delay, self._waits.budget - self.waited)
                if delay <= 0:
                    self._waits.exhausted += 1
                    logger.warning(
                        "infrastructure wait budget used up",
                        extra={"waited_seconds": round(self.waited, 1), "error": describe(exc)},
                    )
                    raise
                failures += 1
                retrying = True
                await self._wait(kind, exc, delay)

    async def _wait(self, kind: str, exc: BaseException, delay: float) -> None:
        waits = self._waits
        waits.waits[kind] += 1
        waits.waiting[kind] += 1
        started = time.monotonic()
        try:
            await self._notice(kind, exc, delay, self.waited)
            remaining = delay - (time.monotonic() - started)
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._cancel.wait(), remaining)
            if self._cancel.is_set():
                raise WaitCancelled(DETAILS[kind]) from exc
        finally:
            waits.waiting[kind] -= 1
            self.waited += time.monotonic() - started

"""How a success is written against the lease its attempt held (``complete_fenced``).

Pure rules, shared by the backends that classify in Python (SQLite; PostgreSQL applies the
same rules in SQL, ``store/sql/postgres/queue.sql``): see
:meth:`store.queue.protocol.TaskQueue.complete_fenced` and :class:`LateOutcome`.
"""

from __future__ import annotations

from store.queue.models import LateOutcome

SETTLING = frozenset(
    {
        LateOutcome.WRITTEN,
        LateOutcome.TAKEN_FROM_DLQ,
        LateOutcome.TAKEN_FROM_QUEUE,
        LateOutcome.SUPERSEDED,
    }
)
"""The outcomes that complete the task."""

LAPSED_PREFIX = "lease of worker {worker} "
"""How ``last_error`` begins when a worker's lease lapsed (expired, or the worker was swept)."""


def classify(
    worker_id: str,
    attempt: int,
    *,
    state: str,
    owner: str | None,
    attempts: int,
    last_error: str | None,
) -> LateOutcome:
    """What a success of ``worker_id``'s attempt ``attempt`` does to a task stored with
    ``state`` (``waiting`` | ``running`` | ``dead`` | ``done``), lease ``owner``,
    ``attempts`` and ``last_error``."""
    if state == "running" and owner == worker_id and attempts == attempt:
        return LateOutcome.WRITTEN
    if state == "done":
        return LateOutcome.FINISHED
    lapsed = (last_error or "").startswith(LAPSED_PREFIX.format(worker=worker_id))
    if attempts == attempt and lapsed and state in ("dead", "waiting"):
        return LateOutcome.TAKEN_FROM_DLQ if state == "dead" else LateOutcome.TAKEN_FROM_QUEUE
    if state == "running" and attempts > attempt:
        return LateOutcome.SUPERSEDED
    return LateOutcome.IGNORED


def late_note(worker_id: str, attempt: int, outcome: LateOutcome) -> str:
    """The ``last_error`` a keyed task keeps when a late result completed it."""
    return f"completed by the late result of attempt {attempt} of worker {worker_id} ({outcome})"

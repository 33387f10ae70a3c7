"""The event store contract: job/run events, schedule events and the audit log.

Implemented by :class:`store.events.file.FileEventStore`; the contract suite
(``tests/contract/test_events_*.py``) holds it to these docstrings.

Guarantees
----------
- **Ids**: every appended event gets an integer id, unique across all streams, greater than
  every id assigned before it (also across restarts, crashes, retention and processes
  sharing the directory). Ids may have gaps (an append that failed or was torn by a crash).
- **Time**: ``at`` is the append time in milliseconds (UTC), never decreasing with the id.
- **Durability**: when ``append`` returns, the event is written (and, in the default
  ``always`` mode, fsynced); see :class:`~store.events.models.Durability`. An append that
  raised, or whose caller was cancelled, may or may not be stored; it is never stored twice.
- **Crash safety**: a torn last line (a write cut by ``kill -9`` or power loss) is never
  read as an event and is cut off by the next writer.
- **Order**: every read returns events in id order (``latest`` and ``recent_audit``:
  newest first).
- **Retention** removes the oldest events of a key or stream in background passes (see
  :class:`~store.events.models.RetentionPolicy`); until a pass runs, reads still see them.

Errors
------
:class:`~store.events.errors.InvalidEvent` for bad arguments (raised before anything is
written), :class:`~store.events.errors.EventStoreClosed` after :meth:`EventStore.close`,
:class:`~store.events.errors.EventStoreError` when the file system fails (the append is not
acknowledged).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from store.events.models import (
    AuditEntry,
    AuditQuery,
    Event,
    EventFilter,
    EventQuery,
    ExportFormat,
    NewEvent,
    Stream,
)
from store.events.options import RetentionReport


class EventSubscription(Protocol):
    """Live events in id order: first those stored after the start id, then new ones."""

    last_id: int
    """Id of the last event returned (the subscription's start id before any)."""

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def __anext__(self) -> Event:
        """The next event, waiting for one if needed.

        Raises ``StopAsyncIteration`` when the store closed or :meth:`close` was called, and
        :class:`~store.events.errors.SubscriberDropped` (with ``last_id``) after the buffered
        events when the subscriber read too slowly and its buffer overflowed.
        """
        ...

    def ready(self, limit: int = 1000) -> list[Event]:
        """Up to ``limit`` events that :meth:`__anext__` would return without waiting, in
        order (possibly none). For readers that send in batches: await one event, then
        take what else is ready."""
        ...

    def close(self) -> None:
        """Stop receiving events; the iterator ends after the ones already buffered."""
        ...


class EventStore(Protocol):
    """An append-only store of events in three streams (see :class:`Stream`)."""

    @property
    def last_id(self) -> int:
        """The highest id this store object has seen (0 when empty)."""
        ...

    async def append(self, event: NewEvent) -> Event:
        """Append one event and return it with its id and timestamp (see *Durability*).

        Concurrent appends are committed together (one fsync per batch).
        """
        ...

    async def append_many(self, events: Sequence[NewEvent]) -> list[Event]:
        """Append several events; they get consecutive ids in input order.

        All are validated before any is queued; each is acknowledged only when all are.
        """
        ...

    async def latest(self, stream: Stream, key: str, limit: int = 25) -> list[Event]:
        """The newest ``limit`` events of ``key`` in ``stream``, newest first.

        Uses the per-key index: cost grows with ``limit``, not with the store's size.
        """
        ...

    async def since(
        self, after_id: int = 0, event_filter: EventFilter | None = None, limit: int = 1000
    ) -> list[Event]:
        """Up to ``limit`` events with ids above ``after_id`` matching the filter, oldest first.

        With ``key`` or ``run_id`` in the filter it uses the indexes; otherwise it reads the
        selected streams from the segment holding ``after_id`` onwards.
        """
        ...

    async def by_run(self, run_id: str, *, after_id: int = 0, limit: int = 1000) -> list[Event]:
        """The events of one run (stream ``runs``), oldest first."""
        ...

    async def recent_audit(self, query: AuditQuery) -> list[AuditEntry]:
        """Newest-first audit entries matching ``query`` (``limit`` default 100)."""
        ...

    def subscribe(
        self, after_id: int = 0, event_filter: EventFilter | None = None, *, buffer: int = 0
    ) -> EventSubscription:
        """Events with ids above ``after_id`` matching the filter: stored ones, then live.

        No event is skipped or delivered twice, also when ``after_id`` comes from before a
        restart of the store. ``buffer`` (default: the store's ``subscriber_buffer``) bounds
        the live events held for a slow reader; when it overflows the subscription is
        dropped (see :class:`EventSubscription`), never the writer slowed. Events appended
        by other processes sharing the directory arrive after their next catch-up (at most
        ``poll_interval`` later).
        """
        ...

    def export_audit(
        self, query: AuditQuery, fmt: ExportFormat, *, newest: bool = False
    ) -> AsyncIterator[bytes]:
        """The audit entries matching ``query``, oldest first, encoded as ``fmt`` in chunks.

        Streams with constant memory. ``limit`` is capped by ``export_limit_max``: the first
        ``limit`` matching entries, or with ``newest`` the last ``limit`` (the ones
        :meth:`recent_audit` lists). Entries appended after the call are not included. See
        :mod:`store.events.export` for the formats.
        """
        ...

    def export_events(self, query: EventQuery, fmt: ExportFormat) -> AsyncIterator[bytes]:
        """The events matching ``query`` (one stream), oldest first, encoded as ``fmt``."""
        ...

    async def apply_retention(self) -> RetentionReport:
        """Run a retention pass now and report what it removed and archived.

        A pass also runs every ``retention_interval`` in the background.
        """
        ...

    async def close(self) -> None:
        """Write what is queued, end subscriptions and release the files. Idempotent."""
        ...

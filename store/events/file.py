"""The file-backed event store: JSONL segments, group commit, in-memory index, live hub.

One writer task per store owns the files (:mod:`store.events._writer`): appends are queued
to it and committed in batches (group commit), and it also catches up with other processes,
fsyncs in ``interval`` mode and runs retention. Reads run in worker threads against the
in-memory index (:mod:`store.events._queries`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self

from store.background import TaskOwner
from store.events import _queries
from store.events._disk import DiskLog, Prepared
from store.events._index import StreamIndex
from store.events._reader import retrying
from store.events._records import encode_event
from store.events._writer import EventWriter, Waiter
from store.events.errors import EventStoreClosed, EventStoreError, InvalidEvent
from store.events.hub import EventHub, Subscription
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
from store.events.options import EventStoreOptions, RetentionReport

logger = logging.getLogger(__name__)


class FileEventStore:
    """An :class:`~store.events.protocol.EventStore` on a local directory.

    Open with ``await FileEventStore.open(options)`` (or ``async with``); close with
    :meth:`close`, which writes what is queued and stops the background work.
    """

    def __init__(self, options: EventStoreOptions) -> None:
        self.options = options
        self._disk = DiskLog(options)
        self._index: dict[Stream, StreamIndex] = {}
        self._hub: EventHub | None = None
        self._writer = EventWriter(options, self._disk, self._index)
        self._tasks = TaskOwner("event-store")
        self._writing: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------------------

    @classmethod
    async def open(cls, options: EventStoreOptions) -> Self:
        store = cls(options)
        started = time.perf_counter()
        try:
            loaded = await asyncio.to_thread(store._disk.open)
        except OSError as exc:
            raise EventStoreError(f"cannot open the event store in {options.directory}") from exc
        for stream in Stream:
            store._index[stream] = StreamIndex(stream, options.directory / stream.value)
        store._writer.load(loaded)
        store._hub = EventHub(store._read_page, loaded.last_id, buffer=options.subscriber_buffer)
        store._writing = store._tasks.spawn(
            store._writer.run(store._hub), name="event-store-writer"
        )
        logger.info(
            "event store opened",
            extra={
                "directory": str(options.directory),
                "events": sum(index.count() for index in store._index.values()),
                "last_id": loaded.last_id,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        return store

    async def close(self) -> None:
        # Shielded: a cancelled close still lets the writer write what is queued.
        if self._writer.closing:
            if self._writing is not None:
                await asyncio.shield(self._writing)
            return
        self._writer.stop()
        if self._writing is not None:
            await asyncio.shield(self._writing)
        await self._tasks.close()
        self.hub.close()
        await asyncio.to_thread(self._disk.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def hub(self) -> EventHub:
        if self._hub is None:
            raise EventStoreClosed("the event store is not open")
        return self._hub

    @property
    def last_id(self) -> int:
        """The highest id this process has indexed (0 for an empty store)."""
        return self.hub.last_id

    def count(self, stream: Stream) -> int:
        """How many events of ``stream`` are stored (as this process knows)."""
        return self._index[stream].count()

    # --- writing -------------------------------------------------------------------------

    async def append(self, event: NewEvent) -> Event:
        if self._writer.closing:
            raise EventStoreClosed("the event store is closed")
        if not isinstance(event, NewEvent):
            raise InvalidEvent("append takes NewEvent objects")
        prepared = Prepared(event.stream, event.key, event.run_id, *encode_event(event))
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._writer.submit([(prepared, event, future)])
        return await future

    async def append_many(self, events: Sequence[NewEvent]) -> list[Event]:
        if self._writer.closing:
            raise EventStoreClosed("the event store is closed")
        loop = asyncio.get_running_loop()
        waiters: list[Waiter] = []
        prepared = []
        for event in events:
            if not isinstance(event, NewEvent):
                raise InvalidEvent("append takes NewEvent objects")
            prepared.append(Prepared(event.stream, event.key, event.run_id, *encode_event(event)))
        for item, event in zip(prepared, events, strict=True):
            future: asyncio.Future[Event] = loop.create_future()
            waiters.append((item, event, future))
        self._writer.submit(waiters)
        return list(await asyncio.gather(*(future for _, _, future in waiters)))

    async def apply_retention(self) -> RetentionReport:
        """Run a retention pass now (one also runs every ``retention_interval``)."""
        if self._writer.closing:
            raise EventStoreClosed("the event store is closed")
        return await self._writer.request_retention()

    # --- reading -------------------------------------------------------------------------

    async def latest(self, stream: Stream, key: str, limit: int = 25) -> list[Event]:
        index = self._index[Stream(stream)]
        if limit < 1:
            raise InvalidEvent("limit must be at least 1")
        return await asyncio.to_thread(retrying, lambda: _queries.latest(index, key, limit))

    async def since(
        self, after_id: int = 0, event_filter: EventFilter | None = None, limit: int = 1000
    ) -> list[Event]:
        if limit < 1:
            raise InvalidEvent("limit must be at least 1")
        return await self._read_page(after_id, event_filter or EventFilter(), limit)

    async def by_run(self, run_id: str, *, after_id: int = 0, limit: int = 1000) -> list[Event]:
        flt = EventFilter(streams=frozenset({Stream.RUNS}), run_id=run_id)
        return await self.since(after_id, flt, limit)

    async def _read_page(self, after_id: int, flt: EventFilter, limit: int) -> list[Event]:
        upto = self.hub.last_id
        return await asyncio.to_thread(
            retrying, lambda: _queries.page(self._index, after_id, upto, flt, limit)
        )

    async def recent_audit(self, query: AuditQuery) -> list[AuditEntry]:
        """Newest-first audit entries matching ``query`` (at most ``query.limit``, or 100).

        With ``target`` it walks that key's index; otherwise it reads backwards through the
        stream until it has enough, so a rare action or actor may read much of the history.
        """
        limit = min(query.limit or 100, self.options.export_limit_max)
        index = self._index[Stream.AUDIT]
        return await asyncio.to_thread(retrying, lambda: _queries.recent_audit(index, query, limit))

    def subscribe(
        self, after_id: int = 0, event_filter: EventFilter | None = None, *, buffer: int = 0
    ) -> Subscription:
        if self._writer.closing:
            raise EventStoreClosed("the event store is closed")
        return self.hub.subscribe(after_id, event_filter, buffer=buffer)

    # --- export --------------------------------------------------------------------------

    def export_audit(
        self, query: AuditQuery, fmt: ExportFormat, *, newest: bool = False
    ) -> AsyncIterator[bytes]:
        fmt = ExportFormat(fmt)
        limit = min(query.limit or self.options.export_limit_max, self.options.export_limit_max)
        index = self._index[Stream.AUDIT]
        upto = self.hub.last_id
        chunks = _queries.audit_export(index, query, fmt, upto, limit, newest=newest)
        return _queries.in_threads(chunks)

    def export_events(self, query: EventQuery, fmt: ExportFormat) -> AsyncIterator[bytes]:
        fmt = ExportFormat(fmt)
        limit = min(query.limit or self.options.export_limit_max, self.options.export_limit_max)
        upto = self.hub.last_id
        index = self._index[query.stream]
        return _queries.in_threads(_queries.event_export(index, query, fmt, upto, limit))

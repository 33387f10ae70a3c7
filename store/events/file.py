"""The file-backed event store: JSONL segments, group commit, in-memory index, live hub.

One *writer task* per store owns the files (:class:`~store.events._disk.DiskLog`): it takes
every append queued since its last batch, writes them with one ``write`` per stream and one
``fdatasync`` per touched segment (in a worker thread, under the directory lock), and only
then resolves the appenders' futures, indexes the events and publishes them to the hub, in
id order. Concurrent appenders therefore share fsyncs (group commit). The same task also
catches up with other processes' appends when idle, fsyncs in ``interval`` mode and runs
retention passes, so the files have exactly one user per process.

Reads run in worker threads against the in-memory index (see ``_reader``).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from bisect import bisect_right
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from types import TracebackType
from typing import Any, Self

from store.events import retention
from store.events._disk import Change, Commit, DiskLog, Loaded, Prepared
from store.events._index import StreamIndex
from store.events._reader import iter_objects, read_ids, retrying
from store.events._records import encode_event
from store.events._sidecar import iter_csv
from store.events.errors import EventStoreClosed, EventStoreError, InvalidEvent
from store.events.export import csv_header, encode
from store.events.hub import EventHub, Subscription
from store.events.models import (
    AuditEntry,
    AuditQuery,
    Durability,
    Event,
    EventFilter,
    EventQuery,
    EventStoreOptions,
    ExportFormat,
    NewEvent,
    RetentionReport,
    Stream,
    from_ms,
    make_event,
    to_ms,
)

logger = logging.getLogger(__name__)

_Waiter = tuple[Prepared, NewEvent, "asyncio.Future[Event]"]
ID_CHUNK = 256


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
        self._queue: list[_Waiter] = []
        self._jobs: list[asyncio.Future[RetentionReport]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._writer: asyncio.Task[None] | None = None

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
        store._load(loaded)
        store._hub = EventHub(store._read_page, loaded.last_id, buffer=options.subscriber_buffer)
        store._writer = asyncio.create_task(store._run(), name="event-store-writer")
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
        if self._closing:
            if self._writer is not None:
                await asyncio.shield(self._writer)
            return
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await asyncio.shield(self._writer)
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
        if self._closing:
            raise EventStoreClosed("the event store is closed")
        if not isinstance(event, NewEvent):
            raise InvalidEvent("append takes NewEvent objects")
        prepared = Prepared(event.stream, event.key, event.run_id, *encode_event(event))
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._queue.append((prepared, event, future))
        self._wake.set()
        return await future

    async def append_many(self, events: Sequence[NewEvent]) -> list[Event]:
        if self._closing:
            raise EventStoreClosed("the event store is closed")
        loop = asyncio.get_running_loop()
        waiters: list[asyncio.Future[Event]] = []
        prepared = []
        for event in events:
            if not isinstance(event, NewEvent):
                raise InvalidEvent("append takes NewEvent objects")
            prepared.append(Prepared(event.stream, event.key, event.run_id, *encode_event(event)))
        for item, event in zip(prepared, events, strict=True):
            future: asyncio.Future[Event] = loop.create_future()
            self._queue.append((item, event, future))
            waiters.append(future)
        self._wake.set()
        return list(await asyncio.gather(*waiters))

    async def apply_retention(self) -> RetentionReport:
        """Run a retention pass now (one also runs every ``retention_interval``)."""
        if self._closing:
            raise EventStoreClosed("the event store is closed")
        future: asyncio.Future[RetentionReport] = asyncio.get_running_loop().create_future()
        self._jobs.append(future)
        self._wake.set()
        return await future

    async def _run(self) -> None:
        """The writer: commits queued events in batches (group commit) and runs the
        background steps (catch-up, interval fsync, retention) between batches.

        While one batch is written and fsynced in a worker thread, the previous one is
        acknowledged here (events built, futures resolved, subscribers fed), so that work
        overlaps the disk instead of waiting for it. Batches are still written one at a
        time, in order, and acknowledged in order.
        """
        loop = asyncio.get_running_loop()
        opts = self.options
        next_poll = loop.time() + opts.poll_interval
        next_sync = loop.time() + opts.fsync_interval
        next_retention = loop.time() + opts.retention_interval
        pending: _Pending | None = None
        while True:
            if pending is None and not self._queue and not self._jobs and not self._closing:
                deadline = min(next_poll, next_retention)
                if opts.durability is Durability.INTERVAL:
                    deadline = min(deadline, next_sync)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(deadline - loop.time(), 0))
            self._wake.clear()
            now = loop.time()
            if pending is not None:
                batch, work = pending
                pending = None
                outcome = await _outcome(work)
                due = bool(self._jobs) or (now >= next_retention and not self._closing)
                if opts.durability is Durability.INTERVAL and now >= next_sync:
                    due = True
                if self._queue and not due:
                    pending = self._start_commit()
                self._acknowledge(batch, outcome)
                next_poll = now + opts.poll_interval
                if pending is not None:
                    continue
            elif self._queue:
                pending = self._start_commit()
                continue
            elif now >= next_poll:
                await self._guarded("catch up", self._refresh)
                next_poll = now + opts.poll_interval
            if opts.durability is Durability.INTERVAL and now >= next_sync:
                await self._guarded("fsync", lambda: asyncio.to_thread(self._disk.sync))
                next_sync = now + opts.fsync_interval
            if self._jobs or (now >= next_retention and not self._closing):
                await self._retention_pass()
                next_retention = loop.time() + opts.retention_interval
            if self._closing and not self._queue and not self._jobs:
                return

    async def _guarded(self, what: str, work: Callable[[], Any]) -> None:
        try:
            await work()
        except Exception:
            logger.exception("event store background step failed", extra={"step": what})

    def _start_commit(self) -> _Pending:
        """Take the next batch off the queue and start writing it in a worker thread."""
        batch = self._queue[: self.options.max_batch]
        del self._queue[: self.options.max_batch]
        items = [item for item, _, _ in batch]
        work = asyncio.get_running_loop().run_in_executor(None, self._disk.commit, items)
        return batch, work

    def _acknowledge(self, batch: list[_Waiter], outcome: Commit | BaseException) -> None:
        if isinstance(outcome, BaseException):
            logger.error("event batch not written", exc_info=outcome, extra={"events": len(batch)})
            error = EventStoreError(f"events not written: {outcome}")
            error.__cause__ = outcome
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        commit = outcome
        self._apply(commit)
        events = []
        moments: dict[int, datetime] = {}  # a batch shares one or two timestamps
        for (_, new, future), (event_id, at_ms) in zip(batch, commit.assigned, strict=True):
            at = moments.get(at_ms)
            if at is None:
                at = moments[at_ms] = from_ms(at_ms)
            event = make_event(event_id, new.stream, new.key, new.type, at, new.data, new.run_id)
            events.append(event)
            if not future.done():
                future.set_result(event)
        self.hub.publish(events)

    async def _refresh(self) -> None:
        self._apply(await asyncio.to_thread(self._disk.refresh))

    def _apply(self, commit: Commit) -> None:
        if commit.reload is not None:
            self._load(commit.reload)
        for change in commit.changes:
            self._add(change)
        if commit.foreign and self._hub is not None:
            fresh = [event for event in commit.foreign if event.id > self._hub.last_id]
            self._hub.publish(fresh)

    def _load(self, loaded: Loaded) -> None:
        for stream, segments in loaded.segments.items():
            index = StreamIndex(stream, self.options.directory / stream.value)
            for name, path, ino, found in segments:
                index.add(index.segment(name, path, ino), found)
            current = self._index.get(stream)
            if current is None:
                self._index[stream] = index
            else:  # in place: readers holding the object see the new contents
                current.reset_from(index)

    def _add(self, change: Change) -> None:
        index = self._index[change.stream]
        index.add(index.segment(change.name, change.path, change.ino), change.found)

    async def _retention_pass(self) -> None:
        jobs, self._jobs = self._jobs, []
        report = RetentionReport(removed={}, archived=0)
        try:
            await self._refresh()
            now_ms = int(time.time() * 1000)

            def work() -> retention.Outcome | None:
                plans = {
                    stream: retention.plan(self._index[stream], policy, now_ms)
                    for stream, policy in self.options.retention.items()
                    if policy.active
                }
                return retention.compact(self._disk, plans, self.options.archive_dir)

            outcome = await asyncio.to_thread(work)
            if outcome is not None:
                for change in outcome.rolls:
                    self._add(change)
                for stream, old, new in outcome.swaps:
                    self._index[stream].replace(old, new)
                for stream, cuts in outcome.cuts.items():
                    self._index[stream].drop_prefixes(cuts)
                report = RetentionReport(
                    removed=outcome.removed,
                    archived=outcome.archived,
                    archive_file=outcome.archive_file,
                )
                if any(outcome.removed.values()):
                    logger.info(
                        "event retention removed events",
                        extra={
                            "removed": {s.value: n for s, n in outcome.removed.items()},
                            "archived": outcome.archived,
                        },
                    )
        except Exception as exc:
            logger.exception("event retention pass failed")
            for job in jobs:
                if not job.done():
                    job.set_exception(EventStoreError(f"retention failed: {exc}"))
            return
        for job in jobs:
            if not job.done():
                job.set_result(report)

    # --- reading -------------------------------------------------------------------------

    async def latest(self, stream: Stream, key: str, limit: int = 25) -> list[Event]:
        index = self._index[Stream(stream)]
        if limit < 1:
            raise InvalidEvent("limit must be at least 1")

        def read() -> list[Event]:
            ids = index.ids_of(key, None)
            assert ids is not None
            return read_ids(index, ids[-limit:])[::-1]

        return await asyncio.to_thread(retrying, read)

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

        def read() -> list[Event]:
            streams = sorted(flt.streams or Stream)
            merged = heapq.merge(
                *(self._stream_events(s, after_id, upto, flt) for s in streams),
                key=lambda event: event.id,
            )
            return list(islice(merged, limit))

        return await asyncio.to_thread(retrying, read)

    def _stream_events(
        self, stream: Stream, after_id: int, upto: int, flt: EventFilter
    ) -> Iterator[Event]:
        index = self._index[stream]
        ids = index.ids_of(flt.key, flt.run_id)
        if ids is not None:
            start = bisect_right(ids, after_id)
            stop = bisect_right(ids, upto)
            for first in range(start, stop, ID_CHUNK):
                chunk = ids[first : min(first + ID_CHUNK, stop)]
                yield from (e for e in read_ids(index, chunk) if flt.matches(e))
            return
        for batch in iter_objects(index, after_id, upto):
            for obj in batch:
                event = _event(obj, stream)
                if flt.matches(event):
                    yield event

    async def recent_audit(self, query: AuditQuery) -> list[AuditEntry]:
        """Newest-first audit entries matching ``query`` (at most ``query.limit``, or 100).

        With ``target`` it walks that key's index; otherwise it reads backwards through the
        stream until it has enough, so a rare action or actor may read much of the history.
        """
        limit = min(query.limit or 100, self.options.export_limit_max)
        index = self._index[Stream.AUDIT]
        keep = _audit_predicate(query)

        def newest_first() -> Iterator[Event]:
            target_ids = index.ids_of(query.target, None)
            pools = (
                [target_ids]
                if target_ids is not None
                else [seg.ids for seg in reversed(index.segments)]
            )
            for pool in pools:
                for stop in range(len(pool), 0, -ID_CHUNK):
                    yield from reversed(read_ids(index, pool[max(stop - ID_CHUNK, 0) : stop]))

        def read() -> list[AuditEntry]:
            matching = (e for e in newest_first() if keep(_record(e)))
            return [AuditEntry.from_event(e) for e in islice(matching, limit)]

        return await asyncio.to_thread(retrying, read)

    def subscribe(
        self, after_id: int = 0, event_filter: EventFilter | None = None, *, buffer: int = 0
    ) -> Subscription:
        if self._closing:
            raise EventStoreClosed("the event store is closed")
        return self.hub.subscribe(after_id, event_filter, buffer=buffer)

    # --- export --------------------------------------------------------------------------

    def export_audit(self, query: AuditQuery, fmt: ExportFormat) -> AsyncIterator[bytes]:
        fmt = ExportFormat(fmt)
        limit = min(query.limit or self.options.export_limit_max, self.options.export_limit_max)
        index = self._index[Stream.AUDIT]
        upto = self.hub.last_id
        keep = _audit_predicate(query)
        until_ms = None if query.until is None else to_ms(query.until)

        def start_after() -> int | None:
            if query.since is None:
                return 0
            at, pos = index.first_at_or_after(to_ms(query.since))
            return None if at >= len(index.segments) else index.segments[at].ids[pos] - 1

        def batches() -> Iterator[list[dict[str, Any]]]:
            after = start_after()
            if after is not None:
                yield from _window(iter_objects(index, after, upto), keep, until_ms, limit)

        plain = query.action is None and query.target is None and query.actor is None
        if fmt is ExportFormat.CSV and plain and until_ms is None:

            def csv_chunks() -> Generator[bytes]:
                # Rows prepared at append time (audit sidecars), else from the raw lines.
                yield csv_header(audit=True)
                after = start_after()
                if after is not None:
                    yield from iter_csv(index, after, upto, limit)

            return _in_threads(csv_chunks())
        return _in_threads(encode(batches(), fmt, audit=True))

    def export_events(self, query: EventQuery, fmt: ExportFormat) -> AsyncIterator[bytes]:
        fmt = ExportFormat(fmt)
        limit = min(query.limit or self.options.export_limit_max, self.options.export_limit_max)
        upto = self.hub.last_id
        flt = EventFilter(
            streams=frozenset({query.stream}), key=query.key, run_id=query.run_id, types=query.types
        )
        since_ms = None if query.since is None else to_ms(query.since)
        until_ms = None if query.until is None else to_ms(query.until)

        def keep(obj: dict[str, Any]) -> bool:
            return since_ms is None or obj["atMs"] >= since_ms

        def batches() -> Iterator[list[dict[str, Any]]]:
            events = self._stream_events(query.stream, 0, upto, flt)
            while chunk := [_record(e) for e in islice(events, ID_CHUNK)]:
                yield chunk

        return _in_threads(
            encode(
                _window(batches(), keep, until_ms, limit),
                fmt,
                audit=False,
                stream=query.stream.value,
            )
        )


def _event(obj: dict[str, Any], stream: Stream) -> Event:
    return Event(
        id=obj["id"],
        stream=stream,
        key=obj["key"],
        type=obj["type"],
        at=from_ms(obj["atMs"]),
        run_id=obj.get("runId"),
        data=obj["data"],
    )


def _record(event: Event) -> dict[str, Any]:
    obj: dict[str, Any] = {"id": event.id, "atMs": event.at_ms, "key": event.key}
    obj["type"] = event.type
    if event.run_id is not None:
        obj["runId"] = event.run_id
    obj["data"] = event.data
    return obj


def _audit_predicate(query: AuditQuery) -> Callable[[dict[str, Any]], bool]:
    wanted = {
        name: value
        for name, value in (
            ("action", query.action),
            ("target", query.target),
            ("actor", query.actor),
        )
        if value is not None
    }
    since_ms = None if query.since is None else to_ms(query.since)
    until_ms = None if query.until is None else to_ms(query.until)

    def keep(obj: dict[str, Any]) -> bool:
        data = obj["data"]
        if any(data.get(name) != value for name, value in wanted.items()):
            return False
        at = obj["atMs"]
        return (since_ms is None or at >= since_ms) and (until_ms is None or at < until_ms)

    return keep


def _window(
    batches: Iterable[list[dict[str, Any]]],
    keep: Callable[[dict[str, Any]], bool],
    until_ms: int | None,
    limit: int,
) -> Iterator[list[dict[str, Any]]]:
    """Filtered batches, stopping at ``until_ms`` (timestamps only grow) and ``limit``."""
    left = limit
    for batch in batches:
        done = until_ms is not None and batch[-1]["atMs"] >= until_ms
        kept = [obj for obj in batch if keep(obj) and (until_ms is None or obj["atMs"] < until_ms)]
        if len(kept) >= left:
            yield kept[:left]
            return
        if kept:
            yield kept
            left -= len(kept)
        if done:
            return


_Pending = tuple[list[_Waiter], "asyncio.Future[Commit]"]


async def _outcome(work: asyncio.Future[Commit]) -> Commit | BaseException:
    """The commit a worker thread made, or the exception it raised. A cancelled writer
    still waits for the thread (it cannot be stopped half way) and then re-raises."""
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await work
        raise
    except Exception as exc:
        return exc


async def _in_threads(chunks: Generator[bytes]) -> AsyncIterator[bytes]:
    """Advance a blocking chunk generator in worker threads, one step at a time."""
    try:
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                return
            if chunk:
                yield chunk
    finally:
        chunks.close()

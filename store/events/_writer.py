"""The writer of an event store: the one task per store that uses its files.

It takes every append queued since its last batch, writes them with one ``write`` per
stream and one ``fdatasync`` per touched segment (in a worker thread, under the directory
lock; see :class:`~store.events._disk.DiskLog`), and only then resolves the appenders'
futures, indexes the events and publishes them to the hub, in id order. Concurrent appenders
therefore share fsyncs (group commit). The same task also catches up with other processes'
appends when idle, fsyncs in ``interval`` mode and runs retention passes, so the files have
exactly one user per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from store.events import retention
from store.events._disk import Change, Commit, DiskLog, Loaded, Prepared
from store.events._index import StreamIndex
from store.events.errors import EventStoreError
from store.events.hub import EventHub
from store.events.models import Durability, Event, NewEvent, Stream, from_ms, make_event
from store.events.options import EventStoreOptions, RetentionReport

logger = logging.getLogger(__name__)

Waiter = tuple[Prepared, NewEvent, "asyncio.Future[Event]"]
"""An append waiting for its batch: what to write, the event, and the appender's future."""
_Pending = tuple[list[Waiter], "asyncio.Future[Commit]"]


class EventWriter:
    """Commits appends in batches and runs the store's background steps; see the module
    docstring. ``index`` is the store's index, which only this writer changes after
    :meth:`load`."""

    def __init__(
        self, options: EventStoreOptions, disk: DiskLog, index: dict[Stream, StreamIndex]
    ) -> None:
        self.options = options
        self._disk = disk
        self._index = index
        self._hub: EventHub | None = None
        self._queue: list[Waiter] = []
        self._jobs: list[asyncio.Future[RetentionReport]] = []
        self._wake = asyncio.Event()
        self.closing = False

    def submit(self, waiters: Sequence[Waiter]) -> None:
        """Queue appends for the next batch."""
        self._queue.extend(waiters)
        self._wake.set()

    def request_retention(self) -> asyncio.Future[RetentionReport]:
        """Ask for a retention pass; the future resolves with its report."""
        future: asyncio.Future[RetentionReport] = asyncio.get_running_loop().create_future()
        self._jobs.append(future)
        self._wake.set()
        return future

    def stop(self) -> None:
        """Write what is queued, then end :meth:`run`."""
        self.closing = True
        self._wake.set()

    def load(self, loaded: Loaded) -> None:
        """Index every segment of a full read of the files."""
        for stream, segments in loaded.segments.items():
            index = StreamIndex(stream, self.options.directory / stream.value)
            for name, path, ino, found in segments:
                index.add(index.segment(name, path, ino), found)
            current = self._index.get(stream)
            if current is None:
                self._index[stream] = index
            else:  # in place: readers holding the object see the new contents
                current.reset_from(index)

    async def run(self, hub: EventHub) -> None:
        """The writer: commits queued events in batches (group commit) and runs the
        background steps (catch-up, interval fsync, retention) between batches, until
        :meth:`stop` and the queue is empty.

        While one batch is written and fsynced in a worker thread, the previous one is
        acknowledged here (events built, futures resolved, subscribers fed), so that work
        overlaps the disk instead of waiting for it. Batches are still written one at a
        time, in order, and acknowledged in order.
        """
        self._hub = hub
        loop = asyncio.get_running_loop()
        opts = self.options
        next_poll = loop.time() + opts.poll_interval
        next_sync = loop.time() + opts.fsync_interval
        next_retention = loop.time() + opts.retention_interval
        pending: _Pending | None = None
        while True:
            if pending is None and not self._queue and not self._jobs and not self.closing:
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
                due = bool(self._jobs) or (now >= next_retention and not self.closing)
                if opts.durability is Durability.INTERVAL and now >= next_sync:
                    due = True
                if self._queue and not due:
                    pending = self._start_commit()
                self._acknowledge(hub, batch, outcome)
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
            if self._jobs or (now >= next_retention and not self.closing):
                await self._retention_pass()
                next_retention = loop.time() + opts.retention_interval
            if self.closing and not self._queue and not self._jobs:
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

    def _acknowledge(
        self, hub: EventHub, batch: list[Waiter], outcome: Commit | BaseException
    ) -> None:
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
        hub.publish(events)

    async def _refresh(self) -> None:
        self._apply(await asyncio.to_thread(self._disk.refresh))

    def _apply(self, commit: Commit) -> None:
        if commit.reload is not None:
            self.load(commit.reload)
        for change in commit.changes:
            self._add(change)
        if commit.foreign and self._hub is not None:
            fresh = [event for event in commit.foreign if event.id > self._hub.last_id]
            self._hub.publish(fresh)

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

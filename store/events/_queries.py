"""Answering reads from the in-memory index: pages across streams, a key's newest events,
audit searches and export rows.

Everything here blocks (it reads segment files, see :mod:`store.events._reader`) and runs in
worker threads; reads see the events up to the id they are given (``upto``, the hub's last
id when the read started), never a half-indexed batch.
"""

from __future__ import annotations

import asyncio
import heapq
from bisect import bisect_right
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from store.events._index import StreamIndex
from store.events._reader import iter_objects, read_ids
from store.events._sidecar import iter_csv
from store.events.export import csv_header, encode
from store.events.models import (
    AuditEntry,
    AuditQuery,
    Event,
    EventFilter,
    EventQuery,
    ExportFormat,
    Stream,
    from_ms,
    to_ms,
)

ID_CHUNK = 256


def page(
    indexes: Mapping[Stream, StreamIndex], after_id: int, upto: int, flt: EventFilter, limit: int
) -> list[Event]:
    """Up to ``limit`` events after ``after_id`` (up to ``upto``) matching ``flt``, merged
    across its streams in id order."""
    streams = sorted(flt.streams or Stream)
    merged = heapq.merge(
        *(stream_events(indexes[s], after_id, upto, flt) for s in streams),
        key=lambda event: event.id,
    )
    return list(islice(merged, limit))


def latest(index: StreamIndex, key: str, limit: int) -> list[Event]:
    """The newest ``limit`` events of ``key``, newest first."""
    ids = index.ids_of(key, None)
    assert ids is not None
    return read_ids(index, ids[-limit:])[::-1]


def stream_events(
    index: StreamIndex, after_id: int, upto: int, flt: EventFilter
) -> Iterator[Event]:
    """The events of one stream in ``(after_id, upto]`` matching ``flt``, in id order: by
    the key's (or run's) ids when the filter names one, else by scanning the segments."""
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
            event = _event(obj, index.stream)
            if flt.matches(event):
                yield event


def recent_audit(index: StreamIndex, query: AuditQuery, limit: int) -> list[AuditEntry]:
    """Newest-first audit entries matching ``query``, at most ``limit``."""
    matching = _newest_audit(index, query, audit_predicate(query))
    return [AuditEntry.from_event(e) for e in islice(matching, limit)]


def _newest_audit(
    index: StreamIndex, query: AuditQuery, keep: Callable[[dict[str, Any]], bool]
) -> Iterator[Event]:
    """The audit events that ``keep`` accepts, newest first: along the target's ids when
    the query names one, else backwards through the stream."""
    target_ids = index.ids_of(query.target, None)
    pools = (
        [target_ids] if target_ids is not None else [seg.ids for seg in reversed(index.segments)]
    )
    for pool in pools:
        for stop in range(len(pool), 0, -ID_CHUNK):
            chunk = reversed(read_ids(index, pool[max(stop - ID_CHUNK, 0) : stop]))
            yield from (event for event in chunk if keep(_record(event)))


def audit_export(
    index: StreamIndex,
    query: AuditQuery,
    fmt: ExportFormat,
    upto: int,
    limit: int,
    *,
    newest: bool = False,
) -> Generator[bytes]:
    """The chunks of an audit export (see :mod:`store.events.export`): the first ``limit``
    matching entries, or with ``newest`` the last ``limit``; oldest first either way."""
    keep = audit_predicate(query)
    until_ms = None if query.until is None else to_ms(query.until)

    def start_after() -> int | None:
        if newest:
            # Backwards to the limit-th newest match (ids up to ``upto``), then forwards.
            upto_only = (e for e in _newest_audit(index, query, keep) if e.id <= upto)
            oldest = next(islice(upto_only, limit - 1, None), None)
            if oldest is not None:
                return oldest.id - 1
        if query.since is None:
            return 0
        at, pos = index.first_at_or_after(to_ms(query.since))
        return None if at >= len(index.segments) else index.segments[at].ids[pos] - 1

    def batches() -> Iterator[list[dict[str, Any]]]:
        after = start_after()
        if after is not None:
            yield from window(iter_objects(index, after, upto), keep, until_ms, limit)

    plain = query.action is None and query.target is None and query.actor is None
    if fmt is ExportFormat.CSV and plain and until_ms is None:

        def csv_chunks() -> Generator[bytes]:
            # Rows prepared at append time (audit sidecars), else from the raw lines.
            yield csv_header(audit=True)
            after = start_after()
            if after is not None:
                yield from iter_csv(index, after, upto, limit)

        return csv_chunks()
    return encode(batches(), fmt, audit=True)


def event_export(
    index: StreamIndex, query: EventQuery, fmt: ExportFormat, upto: int, limit: int
) -> Generator[bytes]:
    """The chunks of an export of one stream's events (see :mod:`store.events.export`)."""
    flt = EventFilter(
        streams=frozenset({query.stream}), key=query.key, run_id=query.run_id, types=query.types
    )
    since_ms = None if query.since is None else to_ms(query.since)
    until_ms = None if query.until is None else to_ms(query.until)

    def keep(obj: dict[str, Any]) -> bool:
        return since_ms is None or obj["atMs"] >= since_ms

    def batches() -> Iterator[list[dict[str, Any]]]:
        events = stream_events(index, 0, upto, flt)
        while chunk := [_record(e) for e in islice(events, ID_CHUNK)]:
            yield chunk

    return encode(
        window(batches(), keep, until_ms, limit), fmt, audit=False, stream=query.stream.value
    )


def audit_predicate(query: AuditQuery) -> Callable[[dict[str, Any]], bool]:
    """Whether a stored audit record matches ``query`` (action, target, actor, time)."""
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


def window(
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


async def in_threads(chunks: Generator[bytes]) -> AsyncIterator[bytes]:
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

"""Reading records back, in worker threads, while the event loop keeps appending.

Readers open segment files by path and check the inode against the index's segment: a
retention pass in this or another process may have replaced the file (same name, new
inode). A reader that holds an open descriptor keeps reading the file it opened, whose
offsets match the segment object it looked up. On any mismatch the read raises
:class:`Stale` and the caller retries against the current index.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from itertools import groupby
from typing import Any, TypeVar

from store.events._index import Segment, StreamIndex
from store.events._records import decode

READ_CHUNK = 1024 * 1024
T = TypeVar("T")
RETRIES = 8


class Stale(Exception):
    """The index changed under a reader (a segment was compacted); retry."""


def _open(seg: Segment) -> int:
    try:
        fd = os.open(seg.path, os.O_RDONLY)
    except FileNotFoundError:
        raise Stale(str(seg.path)) from None
    if os.fstat(fd).st_ino != seg.ino:
        os.close(fd)
        raise Stale(str(seg.path))
    return fd


def retrying(read: Callable[[], T]) -> T:
    for _ in range(RETRIES - 1):
        try:
            return read()
        except Stale:
            continue
    return read()


def read_ids(index: StreamIndex, ids: Sequence[int]) -> list[Any]:
    """The events with these ids (ascending), skipping ids no longer stored."""
    located = [hit for hit in map(index.locate, ids) if hit is not None]
    events = []
    for seg, hits in groupby(located, key=lambda hit: hit[0]):
        positions = [pos for _, pos in hits]
        fd = _open(seg)
        try:
            first, _ = seg.span(positions[0])
            _, last = seg.span(positions[-1])
            if last - first <= READ_CHUNK:
                block = os.pread(fd, last - first, first)
                for pos in positions:
                    start, stop = seg.span(pos)
                    events.append(_checked(block[start - first : stop - first], seg, pos, index))
            else:
                for pos in positions:
                    start, stop = seg.span(pos)
                    events.append(_checked(os.pread(fd, stop - start, start), seg, pos, index))
        finally:
            os.close(fd)
    return events


def _checked(line: bytes, seg: Segment, pos: int, index: StreamIndex) -> Any:
    try:
        event = decode(line, index.stream)
    except (ValueError, KeyError):
        raise Stale(str(seg.path)) from None
    if event.id != seg.ids[pos]:
        raise Stale(str(seg.path))
    return event


def iter_blocks(index: StreamIndex, after_id: int, upto_id: int) -> Iterator[bytes]:
    """Blocks of complete record lines with ids in (``after_id``, ``upto_id``], in order.

    Holds one read chunk at a time. Segments compacted meanwhile are re-located by the
    last id returned, so nothing is skipped or repeated.
    """
    last = after_id
    while last < upto_id:
        for _ in range(RETRIES):
            at, pos = index.first_after(last)
            if at >= len(index.segments):
                return
            seg = index.segments[at]
            stop = min(bisect_right(seg.ids, upto_id), len(seg.offsets))
            if stop <= pos:
                return
            try:
                fd = _open(seg)
                break
            except Stale:
                continue
        else:
            raise Stale("segments keep changing")
        try:
            yield from segment_lines(seg, fd, pos, stop)
        finally:
            os.close(fd)
        last = seg.ids[stop - 1]


def segment_lines(seg: Segment, fd: int, first: int, stop: int) -> Iterator[bytes]:
    """Blocks of complete lines of records ``first`` to ``stop - 1`` of ``seg`` (open as
    ``fd``), one read chunk at a time."""
    offset, end = seg.offsets[first], seg.span(stop - 1)[1]
    carry = b""
    while offset < end:
        chunk = os.pread(fd, min(READ_CHUNK, end - offset), offset)
        if not chunk:
            break
        offset += len(chunk)
        buf = carry + chunk if carry else chunk
        cut = buf.rfind(b"\n") + 1
        carry = buf[cut:]
        if cut:
            yield buf[:cut]


def iter_objects(index: StreamIndex, after_id: int, upto_id: int) -> Iterator[list[dict[str, Any]]]:
    """Like :func:`iter_blocks`, decoded: batches of stored record objects."""
    for block in iter_blocks(index, after_id, upto_id):
        batch = decode_lines(block)
        if batch:
            yield batch


def decode_lines(block: bytes) -> list[dict[str, Any]]:
    # One json.loads per block is much faster than one per line.
    try:
        objs: list[dict[str, Any]] = json.loads(b"[" + block[:-1].replace(b"\n", b",") + b"]")
        return objs
    except ValueError:
        objs = []
        for line in block.splitlines():
            try:
                objs.append(json.loads(line))
            except ValueError:
                continue
        return objs

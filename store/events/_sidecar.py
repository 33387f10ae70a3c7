"""CSV sidecars of audit segments: export rows prepared at append time.

Next to each audit segment ``<name>.jsonl`` the writer keeps ``<name>.csvx``: one *frame*
per commit that wrote audit events into that segment, holding their CSV rows exactly as
the export writes them (see ``export``)::

    F <first id> <last id> <count> <atMs> <payload bytes> <crc32 of payload>\\n<payload>

A commit gives all its events one timestamp, so ``atMs`` holds for every row of the frame.
The sidecar is a cache, never the truth: it is written after the segment (after its fsync
in mode ``always``), is not fsynced itself, and the export uses a frame only when the
in-memory index holds exactly ``count`` records with ids from ``first`` to ``last``, all
stamped ``atMs``, and the payload has its length and checksum. Whatever no valid frame
covers (a crash between segment and sidecar, a torn or damaged sidecar, rows that retention
removed from a frame's range, segments written by an older version) is transcoded from the
JSONL lines instead, so the export is the same either way. Frames are keyed by ids, not
offsets, so they stay valid when retention rewrites a segment; a deleted segment takes its
sidecar along.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from store.events._index import Segment, StreamIndex
from store.events._reader import RETRIES, Stale, _open, segment_lines
from store.events.export import audit_csv_block

logger = logging.getLogger(__name__)

SUFFIX = ".csvx"
READ_CHUNK = 1024 * 1024
OUT_CHUNK = 512 * 1024
_FRAME = re.compile(rb"F (\d+) (\d+) (\d+) (-?\d+) (\d+) (\d+)\n")
_MAX_HEAD = 128


def sidecar_path(segment_path: Path) -> Path:
    return segment_path.with_suffix(SUFFIX)


def frame(first_id: int, last_id: int, at_ms: int, rows: list[bytes]) -> bytes:
    """One frame holding ``rows`` (each ``b",<cells>\\r\\n"``, to follow ``at_ms``)."""
    stamp = b"%d" % at_ms
    payload = stamp + stamp.join(rows)
    head = b"F %d %d %d %d %d %d\n" % (
        first_id,
        last_id,
        len(rows),
        at_ms,
        len(payload),
        zlib.crc32(payload),
    )
    return head + payload


@dataclass(slots=True)
class Frame:
    first: int
    last: int
    count: int
    at_ms: int
    payload: bytes


def iter_frames(fd: int, start: int = 0) -> Iterator[tuple[int, Frame]]:
    """(end offset, frame) of each complete frame from ``start`` (stops at damage)."""
    size = os.fstat(fd).st_size
    offset = start
    buf = b""
    base = start  # file offset of buf[0]
    while offset < size:
        pos = offset - base
        if len(buf) - pos < _MAX_HEAD and base + len(buf) < size:
            buf = buf[pos:] + os.pread(fd, READ_CHUNK, base + len(buf))
            base = offset
            pos = 0
        match = _FRAME.match(buf, pos)
        if match is None:
            return
        first, last, count, at_ms, length, crc = (int(group) for group in match.groups())
        begin = match.end()
        if begin + length <= len(buf):
            payload = buf[begin : begin + length]
        else:
            have = buf[begin:]
            payload = have + os.pread(fd, length - len(have), base + begin + len(have))
            buf, base = b"", base + begin + length
        if len(payload) != length or zlib.crc32(payload) != crc:
            return
        offset += match.end() - pos + length
        yield offset, Frame(first, last, count, at_ms, payload)


def valid_end(fd: int, start: int) -> int:
    """The offset after the last complete frame from ``start`` (a writer cuts the rest)."""
    ends = [start]
    for after, _ in iter_frames(fd, start):
        ends[0] = after
    return ends[0]


class SidecarWriter:
    """The sidecar of the active audit segment (used under the store lock only)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.fd = -1
        self.end = 0

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd, self.path, self.end = -1, None, 0

    def append(self, segment_path: Path, data: bytes) -> None:
        """Add one frame; on failure the frame is just missing (the export transcodes)."""
        path = sidecar_path(segment_path)
        try:
            if path != self.path:
                self.close()
                self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                self.path, self.end = path, -1
            size = os.fstat(self.fd).st_size
            if size != self.end:
                # Another process wrote frames, or a write was cut: find the good end.
                self.end = valid_end(self.fd, self.end if 0 <= self.end <= size else 0)
                if self.end < size:
                    os.ftruncate(self.fd, self.end)
            view = memoryview(data)
            offset = self.end
            while view:
                done = os.pwrite(self.fd, view, offset)
                view, offset = view[done:], offset + done
            self.end = offset
        except OSError:
            logger.warning("audit CSV sidecar not written", extra={"path": str(path)})
            self.close()


def iter_csv(index: StreamIndex, after_id: int, upto_id: int, limit: int) -> Iterator[bytes]:
    """CSV rows (no header) of audit records with ids in (``after_id``, ``upto_id``], at most
    ``limit``, in chunks: from sidecar frames where valid, else transcoded from the lines."""
    last = after_id
    left = limit
    while last < upto_id and left > 0:
        for _ in range(RETRIES):
            at, pos = index.first_after(last)
            if at >= len(index.segments):
                return
            seg = index.segments[at]
            stop = min(bisect_right(seg.ids, upto_id), len(seg.offsets), pos + left)
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
            yield from _segment_csv(seg, fd, pos, stop)
        finally:
            os.close(fd)
        left -= stop - pos
        last = seg.ids[stop - 1]


def _segment_csv(seg: Segment, fd: int, pos: int, stop: int) -> Iterator[bytes]:
    out: list[bytes] = []
    size = 0
    cursor = pos
    for start, part in _plan(seg, pos, stop):
        pieces: Iterator[bytes] | list[bytes] = []
        if start > cursor:  # records no valid frame covers
            pieces = map(audit_csv_block, segment_lines(seg, fd, cursor, start))
        if part is not None:
            pieces = [*pieces, part.payload]
            start += part.count
        cursor = start
        for piece in pieces:
            for cut in range(0, len(piece), OUT_CHUNK):
                data = piece[cut : cut + OUT_CHUNK] if len(piece) > OUT_CHUNK else piece
                if out and size + len(data) > OUT_CHUNK:
                    yield b"".join(out)
                    out, size = [], 0
                out.append(data)
                size += len(data)
    if out:
        yield b"".join(out)


def _plan(seg: Segment, pos: int, stop: int) -> Iterator[tuple[int, Frame | None]]:
    """(position, frame) of each usable frame in order, then (``stop``, None)."""
    cursor = pos
    try:
        side = os.open(sidecar_path(seg.path), os.O_RDONLY)
    except OSError:
        yield stop, None
        return
    ids, ats = seg.ids, seg.ats
    try:
        for _, found in iter_frames(side):
            if cursor >= stop:
                break
            p0 = bisect_left(ids, found.first)
            p1 = p0 + found.count
            if (
                p0 < cursor
                or p1 > len(ids)
                or ids[p0] != found.first
                or ids[p1 - 1] != found.last
                or ats[p0] != found.at_ms
                or ats[p1 - 1] != found.at_ms
            ):
                continue  # already covered, or not what the index holds
            if p1 > stop:
                break
            yield p0, found
            cursor = p1
    finally:
        os.close(side)
    yield stop, None

"""The protocol that lets several processes share the files of an event store (their
layout is :mod:`store.events._layout`).

Every mutation happens under ``LOCK``. Before writing, a process *catches up*: it reads
what other processes appended to the active segments since it last looked (and cuts off a
torn tail left by a process that died mid-write), follows their segment rolls (``EPOCH``
rolls counter) and, when another process compacted files (compactions counter), re-reads
the whole index. Ids are then assigned after the highest id on disk, so they are unique and
increasing across processes, and timestamps never decrease.

All methods of :class:`DiskLog` run in a worker thread, one call at a time (the store's
writer task serialises them).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from store.events._index import segment_name
from store.events._layout import (
    drop_orphan_sidecars,
    fsync_dir,
    read_epoch,
    read_highwater,
    segment_names,
    write_all,
    write_epoch,
    write_highwater,
)
from store.events._records import Scan, make_line, scan
from store.events._sidecar import SidecarWriter, frame
from store.events.models import Durability, Event, Stream
from store.events.options import EventStoreOptions

logger = logging.getLogger(__name__)

STREAMS = tuple(Stream)


@dataclass(slots=True)
class Prepared:
    """One event to write: its stream, key, run id and encoded line tail."""

    stream: Stream
    key: str
    run_id: str | None
    tail: bytes
    csv: bytes = b""
    """Audit events: the CSV row after its ``at`` cell (for the sidecar, see ``_sidecar``)."""


@dataclass(slots=True)
class Loaded:
    """Every segment of every stream, with the heads of their records."""

    segments: dict[Stream, list[tuple[int, Path, int, Scan]]]
    last_id: int


@dataclass(slots=True)
class Change:
    """Records that now exist in one segment (created when new)."""

    stream: Stream
    name: int
    path: Path
    ino: int
    found: Scan


@dataclass(slots=True)
class Commit:
    """What a commit (or a mere catch-up) did, in id order."""

    reload: Loaded | None = None
    changes: list[Change] = field(default_factory=list)
    foreign: list[Event] = field(default_factory=list)
    assigned: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class _Active:
    name: int
    path: Path
    fd: int
    ino: int
    end: int
    dirty: bool = False


class DiskLog:
    """Owner of the store's file descriptors; see the module docstring."""

    def __init__(self, options: EventStoreOptions) -> None:
        self.options = options
        self.root = options.directory
        self.last_id = 0
        self.last_at = 0
        self._active: dict[Stream, _Active] = {}
        self._rolls = 0
        self._compactions = 0
        self._lock_fd = -1
        self._epoch_fd = -1
        self._sidecar = SidecarWriter()

    # --- lifecycle -----------------------------------------------------------------------

    def open(self) -> Loaded:
        """Create the layout if needed, cut torn tails, and read every segment."""
        self.root.mkdir(parents=True, exist_ok=True)
        for stream in STREAMS:
            (self.root / stream.value).mkdir(exist_ok=True)
        self._lock_fd = os.open(self.root / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        self._epoch_fd = os.open(self.root / "EPOCH", os.O_RDWR | os.O_CREAT, 0o644)
        with self.locked():
            return self._load()

    def close(self) -> None:
        for active in self._active.values():
            with contextlib.suppress(OSError):
                if active.dirty:
                    os.fsync(active.fd)
            os.close(active.fd)
        self._active.clear()
        self._sidecar.close()
        for fd in (self._lock_fd, self._epoch_fd):
            if fd >= 0:
                os.close(fd)
        self._lock_fd = self._epoch_fd = -1

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # --- epoch ---------------------------------------------------------------------------

    def _read_epoch(self) -> tuple[int, int]:
        return read_epoch(self._epoch_fd)

    def _write_epoch(self) -> None:
        write_epoch(self._epoch_fd, self._rolls, self._compactions)

    def bump_compactions(self) -> None:
        self._compactions += 1
        self._write_epoch()

    # --- reading everything ----------------------------------------------------------------

    def _load(self, decode_after: int | None = None) -> Loaded:
        """Read every segment (under the lock); reset the active segments."""
        for active in self._active.values():
            os.close(active.fd)
        self._active.clear()
        self._rolls, self._compactions = self._read_epoch()
        segments: dict[Stream, list[tuple[int, Path, int, Scan]]] = {}
        last_id = read_highwater(self.root)
        last_at = 0
        for stream in STREAMS:
            directory = self.root / stream.value
            for leftover in directory.glob("*.tmp"):
                leftover.unlink()
            names = segment_names(directory)
            if stream is Stream.AUDIT:
                drop_orphan_sidecars(directory, names)
            found_all = []
            for position, name in enumerate(names):
                path = directory / segment_name(name)
                newest = position == len(names) - 1
                fd = os.open(path, os.O_RDWR | os.O_APPEND if newest else os.O_RDONLY)
                try:
                    found = scan(fd, stream, decode_after=decode_after)
                    if newest and found.end < found.size:
                        # A torn write of a process that died: never acknowledged.
                        logger.warning(
                            "cut a torn event line",
                            extra={"stream": stream.value, "bytes": found.size - found.end},
                        )
                        os.ftruncate(fd, found.end)
                    ino = os.fstat(fd).st_ino
                except BaseException:
                    os.close(fd)
                    raise
                if newest:
                    self._active[stream] = _Active(name, path, fd, ino, found.end)
                else:
                    os.close(fd)
                if found.ids:
                    last_id = max(last_id, found.ids[-1])
                    last_at = max(last_at, found.ats[-1])
                found_all.append((name, path, ino, found))
            segments[stream] = found_all
        self.last_id = max(self.last_id, last_id)
        self.last_at = max(self.last_at, last_at)
        for stream in STREAMS:
            if stream not in self._active:
                self._roll(stream, self.last_id + 1)
                active = self._active[stream]
                segments[stream].append((active.name, active.path, active.ino, Scan()))
        return Loaded(segments=segments, last_id=self.last_id)

    def write_highwater(self) -> None:
        write_highwater(self.root, self.last_id)

    # --- catching up with other processes -----------------------------------------------------

    def _catch_up(self, commit: Commit) -> None:
        rolls, compactions = self._read_epoch()
        if compactions != self._compactions:
            commit.reload = self._load(decode_after=self.last_id)
            commit.foreign.extend(
                event
                for segs in commit.reload.segments.values()
                for *_, found in segs
                for event in found.events
            )
            commit.foreign.sort(key=lambda event: event.id)
            return
        for stream in STREAMS:
            self._catch_up_active(stream, commit)
            if rolls != self._rolls:
                for name in segment_names(self.root / stream.value):
                    if name > self._active[stream].name:
                        self._follow_roll(stream, name, commit)
        self._rolls = rolls
        commit.foreign.sort(key=lambda event: event.id)

    def _catch_up_active(self, stream: Stream, commit: Commit) -> None:
        active = self._active[stream]
        size = os.fstat(active.fd).st_size
        if size == active.end:
            return
        found = scan(active.fd, stream, active.end, decode_after=0)
        if found.end < size:
            logger.warning(
                "cut a torn event line",
                extra={"stream": stream.value, "bytes": size - found.end},
            )
            os.ftruncate(active.fd, found.end)
        active.end = found.end
        if found.ids:
            self.last_id = max(self.last_id, found.ids[-1])
            self.last_at = max(self.last_at, found.ats[-1])
            commit.changes.append(Change(stream, active.name, active.path, active.ino, found))
            commit.foreign.extend(found.events)

    def _follow_roll(self, stream: Stream, name: int, commit: Commit) -> None:
        old = self._active[stream]
        path = self.root / stream.value / segment_name(name)
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
        os.close(old.fd)
        self._active[stream] = _Active(name, path, fd, os.fstat(fd).st_ino, 0)
        active = self._active[stream]
        commit.changes.append(Change(stream, name, path, active.ino, Scan()))
        self._catch_up_active(stream, commit)

    # --- writing -------------------------------------------------------------------------

    def _roll(self, stream: Stream, name: int) -> None:
        old = self._active.pop(stream, None)
        if old is not None:
            if old.dirty:
                os.fsync(old.fd)
            os.close(old.fd)
        directory = self.root / stream.value
        path = directory / segment_name(name)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        fsync_dir(directory)
        self._active[stream] = _Active(name, path, fd, os.fstat(fd).st_ino, 0)
        self._rolls += 1
        self._write_epoch()

    def roll(self, stream: Stream) -> Change:
        """Start a new active segment (under the lock); used before compacting the old one."""
        self._roll(stream, self.last_id + 1)
        active = self._active[stream]
        return Change(stream, active.name, active.path, active.ino, Scan())

    def active_name(self, stream: Stream) -> int:
        return self._active[stream].name

    def unchanged(self) -> bool:
        """True when no other process wrote since this one's last catch-up (under the lock)."""
        if self._read_epoch() != (self._rolls, self._compactions):
            return False
        return all(os.fstat(active.fd).st_size == active.end for active in self._active.values())

    def refresh(self) -> Commit:
        """Catch up with other processes without writing anything."""
        commit = Commit()
        with self.locked():
            self._catch_up(commit)
        return commit

    def commit(self, batch: list[Prepared]) -> Commit:
        """Write ``batch`` (ids and timestamps assigned in order); durable per the mode."""
        commit = Commit()
        with self.locked():
            self._catch_up(commit)
            now = max(int(time.time() * 1000), self.last_at)
            pieces: dict[Stream, list[bytes]] = {}
            heads: dict[Stream, Scan] = {}
            next_id = self.last_id
            for item in batch:
                next_id += 1
                line = make_line(next_id, now, item.tail)
                commit.assigned.append((next_id, now))
                lines = pieces.get(item.stream)
                if lines is None:
                    lines = pieces[item.stream] = []
                    heads[item.stream] = Scan()
                head = heads[item.stream]
                head.ids.append(next_id)
                head.ats.append(now)
                head.keys.append(item.key)
                head.runs.append(item.run_id)
                head.offsets.append(0)  # set below, once the segment is known
                lines.append(line)
            written: list[tuple[_Active, int]] = []
            try:
                for stream, lines in pieces.items():
                    data = b"".join(lines)
                    head = heads[stream]
                    active = self._active[stream]
                    if active.end and active.end + len(data) > self.options.segment_bytes:
                        self._roll(stream, head.ids[0])
                        active = self._active[stream]
                    offset = start = active.end
                    for position, line in enumerate(lines):
                        head.offsets[position] = offset
                        offset += len(line)
                    written.append((active, start))
                    write_all(active.fd, data)
                    active.end = head.end = offset
                    active.dirty = True
                    commit.changes.append(
                        Change(stream, active.name, active.path, active.ino, head)
                    )
                if self.options.durability is Durability.ALWAYS:
                    for active, _ in written:
                        os.fdatasync(active.fd)
                        active.dirty = False
            except BaseException:
                # Nothing of this batch is acknowledged: take back what reached the files.
                for active, start in written:
                    with contextlib.suppress(OSError):
                        os.ftruncate(active.fd, start)
                    active.end = start
                raise
            self.last_id = next_id
            self.last_at = now
            audit = [item.csv for item in batch if item.stream is Stream.AUDIT]
            if audit and all(audit):
                head = heads[Stream.AUDIT]
                self._sidecar.append(
                    self._active[Stream.AUDIT].path,
                    frame(head.ids[0], head.ids[-1], now, audit),
                )
        return commit

    def sync(self) -> None:
        """fsync every active segment written since the last sync (``interval`` mode)."""
        for active in self._active.values():
            if active.dirty:
                os.fdatasync(active.fd)
                active.dirty = False

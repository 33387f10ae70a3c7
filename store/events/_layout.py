"""The files of an event store directory, and the small primitives that read and write them.

Layout of ``<dir>``::

    LOCK                    flock(2) held (exclusively) by whichever process writes, for
                            the duration of one batch, catch-up or compaction
    EPOCH                   two little-endian u64 counters: segment rolls, compactions
    HIGHWATER               the highest id ever assigned, written before retention deletes
    runs/ schedules/ audit/ one directory per stream holding segment files
        00000000000000000001.jsonl   named by the lowest id they may hold; the newest one
        00000000000000052113.jsonl   of each stream is the *active* segment (appended to)

How processes share these files is :mod:`store.events._disk`.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

from store.events._index import segment_name
from store.events._sidecar import SUFFIX, sidecar_path

_EPOCH = struct.Struct("<QQ")


def read_epoch(fd: int) -> tuple[int, int]:
    """The ``EPOCH`` counters (segment rolls, compactions); zeros for a new file."""
    raw = os.pread(fd, _EPOCH.size, 0)
    if len(raw) < _EPOCH.size:
        return 0, 0
    rolls, compactions = _EPOCH.unpack(raw)
    return int(rolls), int(compactions)


def write_epoch(fd: int, rolls: int, compactions: int) -> None:
    os.pwrite(fd, _EPOCH.pack(rolls, compactions), 0)


def read_highwater(root: Path) -> int:
    """The highest id ever assigned, as ``HIGHWATER`` last recorded it (0 without one)."""
    try:
        return int((root / "HIGHWATER").read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def write_highwater(root: Path, last_id: int) -> None:
    """Record ``last_id`` in ``HIGHWATER``, durably (write, fsync, rename, fsync)."""
    tmp = root / "HIGHWATER.tmp"
    with open(tmp, "w") as handle:
        handle.write(f"{last_id}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / "HIGHWATER")
    fsync_dir(root)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_names(directory: Path) -> list[int]:
    """The names (lowest ids) of the segment files in a stream's directory, in order."""
    names = []
    for entry in os.listdir(directory):
        if entry.endswith(".jsonl") and entry[:-6].isdigit():
            names.append(int(entry[:-6]))
    return sorted(names)


def drop_orphan_sidecars(directory: Path, names: list[int]) -> None:
    """Remove sidecars whose segment is gone (retention deleted it)."""
    wanted = {sidecar_path(directory / segment_name(name)).name for name in names}
    for entry in os.listdir(directory):
        if entry.endswith(SUFFIX) and entry not in wanted:
            with contextlib.suppress(OSError):
                os.unlink(directory / entry)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        done = os.write(fd, view)
        view = view[done:]

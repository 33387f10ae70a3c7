"""Retention: which events a pass removes, archiving audit rows, and compacting segments.

A pass decides per stream a *cut* per key: every event of the key with a smaller id goes.
The cut is the highest of

- ``max_per_key``: the id of the key's N-th newest event;
- ``max_total``: the id of the stream's N-th newest event;
- ``max_age``: the first id whose timestamp is within the age (timestamps never decrease
  along a stream, so "too old" is a prefix of it).

What a pass removes is therefore always the oldest part of each key. Segments holding
removed events are rewritten without them (``<name>.tmp``, fsync, rename, fsync of the
directory) or deleted when nothing is left; the active segment is first rolled so that
appends never touch a file being rewritten. Removed audit rows are appended, in id order,
to ``<archive_dir>/audit-<UTC date>.jsonl`` and fsynced *before* any file loses them, so
the archive holds exactly what retention removed (a crash mid-pass can at worst archive a
row twice, never lose one). ``HIGHWATER`` is written first, so ids continue upward even
when retention empties the store.
"""

from __future__ import annotations

import contextlib
import json
import os
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from store.events._disk import Change, DiskLog
from store.events._index import Segment, StreamIndex
from store.events._layout import fsync_dir
from store.events._sidecar import sidecar_path
from store.events.export import audit_object
from store.events.models import RetentionPolicy, Stream


@dataclass(slots=True)
class Plan:
    cuts: dict[int, int]
    segments: list[Segment]


@dataclass(slots=True)
class Outcome:
    """What a compaction did, to be applied to the in-memory index by the event loop."""

    swaps: list[tuple[Stream, Segment, Segment | None]] = field(default_factory=list)
    rolls: list[Change] = field(default_factory=list)
    cuts: dict[Stream, dict[int, int]] = field(default_factory=dict)
    removed: dict[Stream, int] = field(default_factory=dict)
    archived: int = 0
    archive_file: Path | None = None


def plan(index: StreamIndex, policy: RetentionPolicy, now_ms: int) -> Plan:
    """The cuts of one stream and the segments they touch."""
    floor = 0
    if policy.max_total is not None:
        excess = index.count() - policy.max_total
        for seg in index.segments:
            if excess < len(seg.ids):
                if excess > 0:
                    floor = seg.ids[excess]
                break
            excess -= len(seg.ids)
    if policy.max_age is not None:
        cutoff = now_ms - int(policy.max_age.total_seconds() * 1000)
        at, pos = index.first_at_or_after(cutoff)
        if at < len(index.segments):
            floor = max(floor, index.segments[at].ids[pos])
        else:
            floor = max(floor, index.last_id() + 1)
    cuts: dict[int, int] = {}
    for number, ids in enumerate(index.key_ids):
        if not ids:
            continue
        cut = floor
        if policy.max_per_key is not None and len(ids) > policy.max_per_key:
            cut = max(cut, ids[len(ids) - policy.max_per_key])
        if cut > ids[0]:
            cuts[number] = cut
    touched: set[int] = set()
    for seg_at, seg in enumerate(index.segments):
        if seg.ids and seg.ids[0] < floor:
            touched.add(seg_at)
    for number, cut in cuts.items():
        ids = index.key_ids[number]
        for event_id in ids[: bisect_left(ids, cut)]:
            if event_id >= floor:
                touched.add(bisect_right(index.names, event_id) - 1)
    return Plan(cuts=cuts, segments=[index.segments[at] for at in sorted(touched)])


def compact(
    disk: DiskLog,
    plans: dict[Stream, Plan],
    archive_dir: Path | None,
) -> Outcome | None:
    """Carry out ``plans`` under the store lock; None when another process wrote first."""
    outcome = Outcome()
    with disk.locked():
        if not disk.unchanged():
            return None
        if not any(p.segments for p in plans.values()):
            return outcome
        disk.write_highwater()
        for stream, stream_plan in plans.items():
            outcome.cuts[stream] = stream_plan.cuts
            removed = 0
            for seg in stream_plan.segments:
                if seg.name == disk.active_name(stream):
                    outcome.rolls.append(disk.roll(stream))
                kept, gone = _rewrite(seg, stream_plan.cuts)
                if stream is Stream.AUDIT and archive_dir is not None and gone:
                    outcome.archive_file = _archive(archive_dir, gone)
                    outcome.archived += len(gone)
                outcome.swaps.append((stream, seg, _replace_file(seg, kept)))
                removed += len(gone)
            outcome.removed[stream] = removed
        disk.bump_compactions()
    return outcome


@dataclass(slots=True)
class _Kept:
    lines: list[bytes] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


def _rewrite(seg: Segment, cuts: dict[int, int]) -> tuple[_Kept, list[bytes]]:
    with open(seg.path, "rb") as handle:
        if os.fstat(handle.fileno()).st_ino != seg.ino:
            raise RuntimeError(f"segment {seg.path} changed under the lock")
        data = handle.read(seg.end)
    kept = _Kept()
    gone: list[bytes] = []
    for pos, event_id in enumerate(seg.ids):
        start, stop = seg.span(pos)
        line = data[start:stop]
        if event_id < cuts.get(seg.keys[pos], 0):
            gone.append(line)
        else:
            kept.lines.append(line)
            kept.positions.append(pos)
    return kept, gone


def _replace_file(seg: Segment, kept: _Kept) -> Segment | None:
    directory = seg.path.parent
    if not kept.lines:
        seg.path.unlink()
        with contextlib.suppress(FileNotFoundError):
            sidecar_path(seg.path).unlink()
        fsync_dir(directory)
        return None
    tmp = seg.path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        handle.write(b"".join(kept.lines))
        handle.flush()
        os.fsync(handle.fileno())
        ino = os.fstat(handle.fileno()).st_ino
    os.replace(tmp, seg.path)
    fsync_dir(directory)
    new = Segment(name=seg.name, path=seg.path, ino=ino)
    offset = 0
    for pos, line in zip(kept.positions, kept.lines, strict=True):
        new.ids.append(seg.ids[pos])
        new.ats.append(seg.ats[pos])
        new.keys.append(seg.keys[pos])
        new.offsets.append(offset)
        offset += len(line)
    new.end = offset
    return new


def _archive(archive_dir: Path, lines: list[bytes]) -> Path:
    archive_dir.mkdir(parents=True, exist_ok=True)
    path = archive_dir / f"audit-{datetime.now(UTC):%Y-%m-%d}.jsonl"
    created = not path.exists()
    rows = [
        json.dumps(audit_object(json.loads(line)), ensure_ascii=False, separators=(",", ":"))
        for line in lines
    ]
    with open(path, "ab") as handle:
        handle.write(("\n".join(rows) + "\n").encode())
        handle.flush()
        os.fsync(handle.fileno())
    if created:
        fsync_dir(archive_dir)
    return path

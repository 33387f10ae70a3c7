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
from store.events.models import Stream
from store.events.options import RetentionPolicy


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
            archiving = stream is Stream.AUDIT and archive_dir is not None
            for seg in stream_plan.segments:
                if seg.name == disk.active_name(stream):
                    outcome.rolls.append(disk.roll(stream))
                kept = _rewrite(seg, stream_plan.cuts, collect_gone=archiving)
                if archiving and archive_dir is not None and kept.gone:
                    outcome.archive_file = _archive(archive_dir, kept.gone)
                    outcome.archived += len(kept.gone)
                outcome.swaps.append((stream, seg, _replace_file(seg, kept)))
                removed += kept.removed
            outcome.removed[stream] = removed
        disk.bump_compactions()
    return outcome


@dataclass(slots=True)
class _Kept:
    """A segment rewritten to ``tmp``: the positions and lengths of the records kept, how
    many went, and (for the audit archive) the lines that went."""

    tmp: Path
    ino: int = 0
    positions: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    removed: int = 0
    gone: list[bytes] = field(default_factory=list)


def _rewrite(seg: Segment, cuts: dict[int, int], *, collect_gone: bool) -> _Kept:
    """Copy the records of ``seg`` that stay to ``<name>.tmp`` (fsynced), one record at a
    time: a pass holds one record in memory, not the segment (up to ``segment_bytes``),
    so compacting does not raise the process's memory high-water mark."""
    kept = _Kept(tmp=seg.path.with_suffix(".tmp"))
    with open(seg.path, "rb") as handle, open(kept.tmp, "wb") as out:
        if os.fstat(handle.fileno()).st_ino != seg.ino:
            raise RuntimeError(f"segment {seg.path} changed under the lock")
        for pos, event_id in enumerate(seg.ids):
            start, stop = seg.span(pos)
            if handle.tell() != start:
                handle.seek(start)
            line = handle.read(stop - start)
            if event_id < cuts.get(seg.keys[pos], 0):
                kept.removed += 1
                if collect_gone:
                    kept.gone.append(line)
            else:
                out.write(line)
                kept.positions.append(pos)
                kept.lengths.append(len(line))
        out.flush()
        os.fsync(out.fileno())
        kept.ino = os.fstat(out.fileno()).st_ino
    return kept


def _replace_file(seg: Segment, kept: _Kept) -> Segment | None:
    directory = seg.path.parent
    if not kept.positions:
        kept.tmp.unlink()
        seg.path.unlink()
        with contextlib.suppress(FileNotFoundError):
            sidecar_path(seg.path).unlink()
        fsync_dir(directory)
        return None
    os.replace(kept.tmp, seg.path)
    fsync_dir(directory)
    new = Segment(name=seg.name, path=seg.path, ino=kept.ino)
    offset = 0
    for pos, length in zip(kept.positions, kept.lengths, strict=True):
        new.ids.append(seg.ids[pos])
        new.ats.append(seg.ats[pos])
        new.keys.append(seg.keys[pos])
        new.offsets.append(offset)
        offset += length
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

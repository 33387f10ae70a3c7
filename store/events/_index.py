"""The in-memory index of one stream: where each event is, per segment and per key.

Per segment: parallel arrays of ids, file offsets, timestamps and key numbers, in file
order (ids increase). Per key and per run id: the ids, in order. An id is found by two
binary searches (segment by its name = the lowest id it may hold, then the id within it),
so "latest N of a key" and "since id" never scan the history. About 40 bytes per event.

Only the event loop mutates an index (appends, and swapping whole segments after a
compaction); reader threads tolerate that because they check every record they read
against the id they expected (see ``store.events._reader``).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from store.events._records import Scan
from store.events.models import Stream


def segment_name(first_id: int) -> str:
    return f"{first_id:020d}.jsonl"


@dataclass(slots=True, eq=False)
class Segment:
    """One segment file and the heads of its records."""

    name: int
    path: Path
    ino: int
    ids: array[int] = field(default_factory=lambda: array("q"))
    offsets: array[int] = field(default_factory=lambda: array("q"))
    ats: array[int] = field(default_factory=lambda: array("q"))
    keys: array[int] = field(default_factory=lambda: array("q"))
    end: int = 0

    def span(self, pos: int) -> tuple[int, int]:
        """Byte range of the record at position ``pos``."""
        start = self.offsets[pos]
        stop = self.offsets[pos + 1] if pos + 1 < len(self.offsets) else self.end
        return start, stop


@dataclass(slots=True, eq=False)
class StreamIndex:
    stream: Stream
    directory: Path
    segments: list[Segment] = field(default_factory=list)
    names: list[int] = field(default_factory=list)
    key_numbers: dict[str, int] = field(default_factory=dict)
    key_names: list[str] = field(default_factory=list)
    key_ids: list[array[int]] = field(default_factory=list)
    run_ids: dict[str, tuple[int, array[int]]] = field(default_factory=dict)

    # --- building ------------------------------------------------------------------------

    def segment(self, name: int, path: Path, ino: int) -> Segment:
        """The segment named ``name``, added (as the newest) when it is new."""
        if self.names and self.names[-1] == name:
            return self.segments[-1]
        if self.names and name < self.names[-1]:
            raise ValueError(f"segment {name} is older than the newest segment")
        seg = Segment(name=name, path=path, ino=ino)
        self.segments.append(seg)
        self.names.append(name)
        return seg

    def key_number(self, key: str) -> int:
        number = self.key_numbers.get(key)
        if number is None:
            number = len(self.key_names)
            self.key_numbers[key] = number
            self.key_names.append(key)
            self.key_ids.append(array("q"))
        return number

    def add(self, seg: Segment, found: Scan) -> None:
        """Append the records of ``found`` (read from ``seg``, after its known end)."""
        key_number = self.key_number
        key_ids = self.key_ids
        run_ids = self.run_ids
        numbers = array("q")
        for event_id, key, run in zip(found.ids, found.keys, found.runs, strict=True):
            number = key_number(key)
            numbers.append(number)
            key_ids[number].append(event_id)
            if run is not None:
                entry = run_ids.get(run)
                if entry is None:
                    run_ids[run] = (number, array("q", (event_id,)))
                else:
                    entry[1].append(event_id)
        seg.ids.extend(found.ids)
        seg.offsets.extend(found.offsets)
        seg.ats.extend(found.ats)
        seg.keys.extend(numbers)
        seg.end = max(seg.end, found.end)

    def reset_from(self, other: StreamIndex) -> None:
        """Take over ``other``'s contents (after a full re-read)."""
        self.segments, self.names = other.segments, other.names
        self.key_numbers, self.key_names = other.key_numbers, other.key_names
        self.key_ids, self.run_ids = other.key_ids, other.run_ids

    def replace(self, old: Segment, new: Segment | None) -> None:
        """Swap a compacted segment in (or drop it when ``new`` is None)."""
        index = self.segments.index(old)
        if new is None:
            del self.segments[index]
            del self.names[index]
        else:
            self.segments[index] = new

    def drop_prefixes(self, cuts: dict[int, int]) -> None:
        """Forget ids below ``cuts[key number]`` in the per-key and per-run lists."""
        for number, cut in cuts.items():
            ids = self.key_ids[number]
            del ids[: bisect_left(ids, cut)]
        for run, (number, run_ids) in list(self.run_ids.items()):
            run_cut = cuts.get(number)
            if run_cut is not None:
                del run_ids[: bisect_left(run_ids, run_cut)]
                if not run_ids:
                    del self.run_ids[run]

    # --- reading -------------------------------------------------------------------------

    def locate(self, event_id: int) -> tuple[Segment, int] | None:
        """The segment holding ``event_id`` and its position there, or None."""
        at = bisect_right(self.names, event_id) - 1
        if at < 0:
            return None
        seg = self.segments[at]
        pos = bisect_left(seg.ids, event_id)
        if pos < len(seg.ids) and seg.ids[pos] == event_id:
            return seg, pos
        return None

    def first_after(self, event_id: int) -> tuple[int, int]:
        """(segment index, position) of the first record with an id above ``event_id``."""
        at = max(bisect_right(self.names, event_id) - 1, 0)
        while at < len(self.segments):
            seg = self.segments[at]
            pos = bisect_right(seg.ids, event_id)
            if pos < len(seg.ids):
                return at, pos
            at += 1
        return len(self.segments), 0

    def first_at_or_after(self, at_ms: int) -> tuple[int, int]:
        """(segment index, position) of the first record with a timestamp >= ``at_ms``.

        Timestamps never decrease along a stream (the writer makes them monotonic).
        """
        for at, seg in enumerate(self.segments):
            if seg.ats and seg.ats[-1] >= at_ms:
                return at, bisect_left(seg.ats, at_ms)
        return len(self.segments), 0

    def count(self) -> int:
        return sum(len(seg.ids) for seg in self.segments)

    def last_id(self) -> int:
        for seg in reversed(self.segments):
            if seg.ids:
                return seg.ids[-1]
        return 0

    def ids_of(self, key: str | None, run_id: str | None) -> array[int] | None:
        """The ids of one key or run (None when the filter names neither)."""
        if run_id is not None:
            entry = self.run_ids.get(run_id)
            if entry is None:
                return array("q")
            ids = entry[1]
            if key is not None and self.key_names[entry[0]] != key:
                return array("q")
            floor = self.key_ids[entry[0]]
            # Ids below the key's oldest kept id were removed by retention.
            if floor and ids and ids[0] < floor[0]:
                return ids[bisect_left(ids, floor[0]) :]
            return ids if floor else array("q")
        if key is not None:
            number = self.key_numbers.get(key)
            return array("q") if number is None else self.key_ids[number]
        return None

"""Bounded retention of a run's output: the head and the tail, with the true byte count.

A job may print far more than ``WORKER_JOB_OUTPUT_BYTES``. The beginning (what it set out to
do) and the end (how it failed) are what people read, so the buffer keeps the first half of
the limit verbatim and the last half in a ring, counts every byte, and renders the two with a
marker saying how much was left out::

    <head>
    ... [longshore: 9000 bytes omitted of 10000 total] ...
    <tail>

Appending costs O(len(chunk)) and memory never exceeds the limit, whatever the chunk sizes.
"""

from __future__ import annotations


def omission_marker(omitted: int, total: int) -> bytes:
    """The line put between head and tail when ``omitted`` of ``total`` bytes were dropped."""
    return f"\n... [longshore: {omitted} bytes omitted of {total} total] ...\n".encode()


class OutputBuffer:
    """Keeps the first ``limit_bytes // 2`` and the last ``limit_bytes - limit_bytes // 2``
    bytes of a stream, and the total number of bytes seen."""

    __slots__ = ("_filled", "_head", "_head_limit", "_pos", "_ring", "_tail_limit", "_total")

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 0:
            raise ValueError("limit_bytes must be >= 0")
        self._head_limit = limit_bytes // 2
        self._tail_limit = limit_bytes - self._head_limit
        self._head = bytearray()
        self._ring = bytearray(self._tail_limit)
        self._pos = 0  # where the next tail byte goes in the ring
        self._filled = 0  # how many ring bytes hold data
        self._total = 0

    @property
    def limit_bytes(self) -> int:
        """How many bytes are retained at most (the marker not counted)."""
        return self._head_limit + self._tail_limit

    @property
    def total_bytes(self) -> int:
        """Every byte appended so far, retained or not."""
        return self._total

    @property
    def truncated(self) -> bool:
        """True once more bytes were appended than can be retained."""
        return self._total > self.limit_bytes

    def append(self, chunk: bytes | bytearray | memoryview) -> None:
        """Add the next piece of the stream."""
        data = memoryview(chunk).cast("B")
        self._total += len(data)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data or self._tail_limit == 0:
            return
        size = self._tail_limit
        if len(data) >= size:
            self._ring[:] = data[-size:]
            self._pos = 0
            self._filled = size
            return
        first = min(len(data), size - self._pos)
        self._ring[self._pos : self._pos + first] = data[:first]
        rest = len(data) - first
        if rest:
            self._ring[:rest] = data[first:]
        self._pos = (self._pos + len(data)) % size
        self._filled = min(size, self._filled + len(data))

    def _tail(self) -> bytes:
        if self._filled < self._tail_limit:
            return bytes(self._ring[: self._filled])
        return bytes(self._ring[self._pos :] + self._ring[: self._pos])

    def render(self) -> bytes:
        """The retained output: everything when it fit, else head + marker + tail."""
        head, tail = bytes(self._head), self._tail()
        omitted = self._total - len(head) - len(tail)
        if omitted == 0:
            return head + tail
        return head + omission_marker(omitted, self._total) + tail

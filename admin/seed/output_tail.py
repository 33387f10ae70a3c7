"""The tail of a run's stored output, as seed 003's job events carry it in ``result``."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Final

from store.artifacts import ArtifactNotFound, ArtifactStore

TAIL_CHARS: Final = 240
"""``result`` holds at most this many characters: the end of the output."""

_TAIL_BYTES: Final = TAIL_CHARS * 4
"""Enough bytes for :data:`TAIL_CHARS` characters of UTF-8, whatever they are."""


class OutputTails:
    """The last :data:`TAIL_CHARS` characters of stored outputs, by their SHA256.

    A run's retained output is stored once its container exits and never changes (the
    store is content-addressed), so tails are cached (the ``size`` most recently used):
    a list of runs re-read every few seconds by many clients costs one read per output.
    """

    def __init__(self, artifacts: ArtifactStore | None, *, size: int = 4096) -> None:
        self._artifacts = artifacts
        self._size = size
        self._cache: OrderedDict[str, str] = OrderedDict()

    async def tail(self, sha256: str | None) -> str:
        """The tail of the output stored under ``sha256``; ``""`` without one (the run has
        not finished, or ended before its container ran) or when it is no longer stored."""
        if sha256 is None or self._artifacts is None:
            return ""
        found = self._cache.get(sha256)
        if found is not None:
            self._cache.move_to_end(sha256)
            return found
        try:
            text = await asyncio.to_thread(_read_tail, self._artifacts, sha256)
        except (ArtifactNotFound, OSError):
            return ""
        self._cache[sha256] = text
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return text


def _read_tail(artifacts: ArtifactStore, sha256: str) -> str:
    with artifacts.open(sha256) as blob:
        blob.seek(0, 2)
        size = blob.tell()
        blob.seek(max(size - _TAIL_BYTES, 0))
        data = blob.read()
    start = 0
    if size > _TAIL_BYTES:
        # Cut at a byte offset: skip the end of a character cut in half.
        while start < len(data) and 0x80 <= data[start] < 0xC0:
            start += 1
    return data[start:].decode("utf-8", errors="replace")[-TAIL_CHARS:]

"""A write-only file that hashes what passes through it, so bytes are hashed as they are
written instead of being read back."""

from __future__ import annotations

import hashlib
from typing import BinaryIO

__all__ = ["HashingWriter"]


class HashingWriter:
    """Writes to ``out`` and keeps the SHA256 (:attr:`digest`) and :attr:`size` of all the
    bytes written."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self._out.write(data)

"""A content-addressed cache of verified downloads.

A file is stored under ``<root>/<first two hex digits>/<sha256>`` only after its SHA256 has
been computed over the exact bytes received, so a name is a promise about the content. A
second fetch pinned to a SHA256 that is cached makes no network request.

Entries are re-hashed when copied out (:meth:`DownloadCache.copy_out`): a file changed on
disk after it was stored is dropped and fetched again rather than trusted. Storing is atomic
(write to a temporary name in the cache, then ``os.replace``), so concurrent workers storing
the same content are harmless and a reader never sees half a file.

There is no eviction: the cache grows with the distinct tarballs jobs use, each at most
``WORKER_JOB_TARBALL_MAX_BYTES``; delete the directory to reclaim space (entries are
re-downloaded on demand).

Every method blocks on file I/O; async callers run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO, Final

from jobrunner.errors import InvalidDefinition, SourceRejected

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK: Final = 1024 * 1024


def normalise_sha256(value: str, *, field: str = "tarballSha256") -> str:
    """``value`` as 64 lower-case hex digits; :class:`InvalidDefinition` otherwise."""
    lowered = value.strip().lower()
    if not _SHA256.fullmatch(lowered):
        raise InvalidDefinition(field, "must be a SHA256: 64 hexadecimal digits")
    return lowered


def copy_and_hash(
    src: BinaryIO, dest: BinaryIO | None, *, max_bytes: int | None = None
) -> tuple[str, int]:
    """Copy ``src`` to ``dest`` (or only read it, when None) and return the SHA256 and size
    of the bytes read.

    Raises :class:`SourceRejected` as soon as more than ``max_bytes`` have been read.
    """
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(_CHUNK):
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise SourceRejected(f"tarball is larger than the cap of {max_bytes} bytes")
        digest.update(chunk)
        if dest is not None:
            dest.write(chunk)
    return digest.hexdigest(), size


def remove_quietly(path: Path) -> None:
    """Remove ``path`` if it is there (a partial download or copy)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class DownloadCache:
    """Verified downloads stored by their SHA256 under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        """Where the content with this SHA256 is (or would be) stored."""
        sha256 = normalise_sha256(sha256)
        return self.root / sha256[:2] / sha256

    def contains(self, sha256: str) -> bool:
        """Whether an entry for ``sha256`` exists (it is verified only when copied out)."""
        return self.path_for(sha256).is_file()

    def copy_out(self, sha256: str, dest: Path) -> int | None:
        """Copy the cached content to ``dest`` (created or replaced) and return its size.

        Returns None, leaving ``dest`` absent, when there is no entry or the entry no longer
        hashes to ``sha256`` (that entry is removed so the next fetch replaces it).
        """
        entry = self.path_for(sha256)
        try:
            src = entry.open("rb")
        except FileNotFoundError:
            return None
        tmp = _temp_beside(dest)
        try:
            with src, tmp.open("xb") as out:
                actual, size = copy_and_hash(src, out)
            if actual != sha256:
                logger.warning(
                    "cached download is corrupt; dropping it",
                    extra={"sha256": sha256, "actual": actual},
                )
                remove_quietly(entry)
                remove_quietly(tmp)
                return None
            os.replace(tmp, dest)
        except BaseException:
            remove_quietly(tmp)
            raise
        return size

    def store(self, src: Path, sha256: str) -> Path:
        """Store a copy of ``src``, whose SHA256 the caller has computed, and return its path.

        Idempotent: an existing entry is replaced by identical content.
        """
        entry = self.path_for(sha256)
        entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = _temp_beside(entry)
        try:
            try:
                # Same file system: a hard link costs nothing and is as good as a copy,
                # because neither name is ever written to again.
                os.link(src, tmp)
            except OSError:
                with src.open("rb") as fin, tmp.open("xb") as fout:
                    copy_and_hash(fin, fout)
            os.replace(tmp, entry)
        except BaseException:
            remove_quietly(tmp)
            raise
        return entry


def _temp_beside(path: Path) -> Path:
    """A fresh temporary name in ``path``'s directory, for a write-then-rename."""
    return path.parent / f".tmp-{secrets.token_hex(12)}.part"

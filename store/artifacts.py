"""Content-addressed blob store on the filesystem (run artifacts, source tarballs).

A blob lives at ``<root>/sha256/<first two hex>/<all 64 hex>`` and is named by nothing but the
SHA256 of its bytes, so a name from outside can never point anywhere else: every method takes
the digest, checks it is exactly 64 lowercase hex digits, and builds the path itself.

Writing is crash-safe: bytes go to a temporary file in ``<root>/tmp`` (same filesystem) while
being hashed and counted, the file is fsynced, renamed onto its final name (atomic; an existing
blob with the same digest is simply replaced by identical bytes) and the directory fsynced. A
write over ``max_bytes`` stops at the first byte too many and leaves nothing behind. The writer
holds an ``flock`` on its temporary file until the rename, so that a temporary file nobody
holds is known to be the leftover of a crash (:meth:`ArtifactStore.remove_abandoned`).

Blobs are removed only by retention (:meth:`ArtifactStore.discard`), once no run references
them, and never one written since a given time: a run stores its blobs a little before it
records them, so a blob that looks unreferenced may be about to be referenced again.

Errors (under ``store.errors.StoreError``): ``ArtifactTooLarge`` (also a ``ValueError``),
``ArtifactNotFound`` (also a ``LookupError``); a malformed digest is a ``ValueError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import AsyncIterable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from store.errors import StoreError

_SHA256 = re.compile(r"[0-9a-f]{64}")
_READ_CHUNK = 1024 * 1024
TEMPORARY_PREFIX = "blob-"
"""Temporary files of blobs being written: ``<root>/tmp/blob-*``."""
_ASIDE_PREFIX = "discard-"


class ArtifactTooLarge(StoreError, ValueError):
    """A blob being stored grew past its byte cap; nothing was stored."""


class ArtifactNotFound(StoreError, LookupError):
    """No blob with that digest is stored."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BlobRef:
    """A stored blob: the SHA256 (64 lowercase hex) of its bytes and its size."""

    sha256: str
    size: int


def check_sha256(sha256: str) -> str:
    """Return ``sha256`` if it is 64 lowercase hex digits, else raise ``ValueError``."""
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ValueError("a blob digest must be 64 lowercase hex digits")
    return sha256


class BlobWriter:
    """One blob being written: ``write`` chunks, then ``commit`` (or ``abort``).

    Not thread-safe; blocking file I/O (use from a thread in async code).
    """

    def __init__(self, store: ArtifactStore, max_bytes: int | None) -> None:
        self._store = store
        self._max = max_bytes
        self._hash = hashlib.sha256()
        self._size = 0
        fd, name = tempfile.mkstemp(dir=store.root / "tmp", prefix=TEMPORARY_PREFIX)
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed (or we die)
        self._path = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append ``chunk``; raises ``ArtifactTooLarge`` (and aborts) past ``max_bytes``."""
        if self._file is None:
            raise RuntimeError("the blob writer is closed")
        if self._max is not None and self._size + len(chunk) > self._max:
            self.abort()
            raise ArtifactTooLarge(f"blob larger than its cap of {self._max} bytes")
        self._file.write(chunk)
        self._hash.update(chunk)
        self._size += len(chunk)

    def commit(self) -> BlobRef:
        """Make the blob durable under its digest and return its reference."""
        if self._file is None:
            raise RuntimeError("the blob writer is closed")
        ref = BlobRef(sha256=self._hash.hexdigest(), size=self._size)
        final = self._store.path(ref.sha256)
        # Closed (and so unlocked) only once renamed: an unlocked temporary file is a leftover.
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self._path, 0o444)
            os.replace(self._path, final)
        except BaseException:
            self._path.unlink(missing_ok=True)
            raise
        finally:
            self._file.close()
            self._file = None
        _fsync_dir(final.parent)
        return ref

    def abort(self) -> None:
        """Drop what was written (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._path.unlink(missing_ok=True)


class ArtifactStore:
    """Blobs named by their SHA256 under ``root`` (created if missing)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        """Where the blob with this digest is (or would be) stored."""
        digest = check_sha256(sha256)
        return self.root / "sha256" / digest[:2] / digest

    def exists(self, sha256: str) -> bool:
        """Whether a blob with this digest is stored."""
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        """The size in bytes of a stored blob; ``ArtifactNotFound`` if there is none."""
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"no blob {sha256}") from exc

    def open(self, sha256: str) -> BinaryIO:
        """Open a stored blob for reading (the caller closes it); ``ArtifactNotFound`` if
        there is none."""
        try:
            return self.path(sha256).open("rb")
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"no blob {sha256}") from exc

    def digests(self) -> Iterator[str]:
        """The digest of every stored blob, in no particular order (blocking)."""
        for shard in os.scandir(self.root / "sha256"):
            if shard.is_dir(follow_symlinks=False):
                for entry in os.scandir(shard.path):
                    if _SHA256.fullmatch(entry.name):
                        yield entry.name

    def discard(self, sha256: str, *, written_before: float) -> int:
        """Remove the blob unless it was written at or after ``written_before`` (a POSIX
        time); return the bytes freed (0 when kept or absent). Blocking.

        The caller has checked that no run references the blob. The blob is renamed aside
        before its time is read, so that a writer storing the same bytes at that moment is
        never lost: either the rename took the old file and the writer's new one stays, or it
        took the new one, which is too young and goes back.
        """
        final = self.path(sha256)
        aside = self.root / "tmp" / f"{_ASIDE_PREFIX}{sha256}-{secrets.token_hex(4)}"
        try:
            os.rename(final, aside)
        except FileNotFoundError:
            return 0
        status = aside.stat()
        if status.st_mtime >= written_before:
            os.rename(aside, final)
            return 0
        aside.unlink()
        return status.st_size

    def remove_abandoned(self, *, older_than: float) -> tuple[int, int]:
        """Remove the temporary files of writes that will never finish; return how many
        files and bytes. Blocking.

        A ``blob-*`` file goes when no writer holds its lock (the writer crashed) and it was
        last written before ``older_than`` (which also spares one created a moment ago whose
        writer is about to lock it). A blob left aside by a :meth:`discard` that was cut
        short goes back to its name (or goes, when the name is taken again).
        """
        files = size = 0
        for entry in os.scandir(self.root / "tmp"):
            if entry.name.startswith(TEMPORARY_PREFIX):
                freed = _remove_unlocked(Path(entry.path), older_than)
            elif entry.name.startswith(_ASIDE_PREFIX):
                freed = self._restore_aside(Path(entry.path), older_than)
            else:
                continue
            if freed is not None:
                files += 1
                size += freed
        return files, size

    def _restore_aside(self, aside: Path, older_than: float) -> int | None:
        digest = aside.name[len(_ASIDE_PREFIX) :].partition("-")[0]
        try:
            status = aside.stat()
            # The rename aside set its ctime: a discard under way (any process) is young.
            if status.st_ctime >= older_than or not _SHA256.fullmatch(digest):
                return None
            final = self.path(digest)
            if final.exists():
                aside.unlink()
                return status.st_size
            os.rename(aside, final)
        except FileNotFoundError:
            pass
        return None

    def writer(self, *, max_bytes: int | None = None) -> BlobWriter:
        """Start writing a blob of at most ``max_bytes`` (``None``: no cap)."""
        return BlobWriter(self, max_bytes)

    def put_chunks(self, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> BlobRef:
        """Store the concatenation of ``chunks`` (blocking)."""
        writer = self.writer(max_bytes=max_bytes)
        try:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def put_file(self, fileobj: BinaryIO, *, max_bytes: int | None = None) -> BlobRef:
        """Store everything ``fileobj`` yields until EOF (blocking)."""
        return self.put_chunks(iter(lambda: fileobj.read(_READ_CHUNK), b""), max_bytes=max_bytes)

    async def put_stream(
        self,
        source: AsyncIterable[bytes] | Iterable[bytes] | BinaryIO,
        *,
        max_bytes: int | None = None,
    ) -> BlobRef:
        """Store an async iterator of chunks, an iterable of chunks or a binary file object.

        File I/O runs in worker threads; the event loop never blocks on the disk.
        """
        if isinstance(source, AsyncIterable):
            writer = await asyncio.to_thread(self.writer, max_bytes=max_bytes)
            try:
                async for chunk in source:
                    await asyncio.to_thread(writer.write, chunk)
                return await asyncio.to_thread(writer.commit)
            except BaseException:
                writer.abort()
                raise
        if isinstance(source, Iterable) and not hasattr(source, "read"):
            return await asyncio.to_thread(self.put_chunks, source, max_bytes=max_bytes)
        return await asyncio.to_thread(self.put_file, cast(BinaryIO, source), max_bytes=max_bytes)


def _remove_unlocked(path: Path, older_than: float) -> int | None:
    """Remove ``path`` if no one holds its lock and it is older than ``older_than``; the
    bytes freed, or ``None`` when it stays."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, OSError):
        return None
    try:
        status = os.fstat(fd)
        if status.st_mtime >= older_than:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live writer
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            return status.st_size
        return None
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

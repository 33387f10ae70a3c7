"""Reading an untrusted archive as a stream, with its format and size under control.

An archive is a gzip-compressed or plain tar, told apart by magic bytes (never by file name);
anything else (bzip2, xz, zstd, zip, a tar without the ``ustar`` magic) is refused. It is read
as a stream, header by header (:func:`open_tar`), so each entry can be checked
(:mod:`jobrunner.archive.entries`) before a byte of its data is read. The decompressed stream
is capped (the total of the file sizes plus a bounded allowance for headers), counting the
bytes actually produced, and each PAX or long-name header is capped, so a decompression bomb
is stopped while it is being inflated and nothing of it reaches disk. Whatever a corrupt or
hostile stream makes the readers raise becomes :class:`~jobrunner.errors.UnsafeArchive`
(:func:`reading_errors`).
"""

from __future__ import annotations

import contextlib
import gzip
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final, Literal, Protocol, Self, cast

from jobrunner.config import SourceLimits
from jobrunner.errors import UnsafeArchive

__all__ = [
    "REFUSED_TYPES",
    "ArchiveInput",
    "Compression",
    "detect_compression",
    "open_tar",
    "reading_errors",
]

Compression = Literal["gzip", "none"]
ArchiveInput = Path | BinaryIO
"""An archive: a file's path, or a binary file object."""

_BLOCK: Final = tarfile.BLOCKSIZE
_GZIP_MAGIC: Final = b"\x1f\x8b"
_UNSUPPORTED_MAGIC: Final = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PK\x03\x04": "zip",
}
_MAX_META_BYTES: Final = 1024 * 1024
"""Largest PAX or GNU long-name header accepted; tarfile holds each one in memory."""
_META_TYPES: Final = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)
REFUSED_TYPES: Final = {
    tarfile.LNKTYPE: "hard links are not allowed",
    tarfile.CHRTYPE: "device nodes are not allowed",
    tarfile.BLKTYPE: "device nodes are not allowed",
    tarfile.FIFOTYPE: "fifos are not allowed",
    tarfile.GNUTYPE_SPARSE: "sparse files are not allowed",
    tarfile.CONTTYPE: "contiguous files are not supported",
}


"""Entry types never accepted, with the reason given."""


def detect_compression(head: bytes) -> Compression:
    """Tell gzip from plain tar by the first bytes (at least 262 for a plain tar).

    Raises UnsafeArchive for any other format.
    """
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    for magic, name in _UNSUPPORTED_MAGIC.items():
        if head.startswith(magic):
            raise UnsafeArchive(f"archive is {name}-compressed; only gzip or plain tar is allowed")
    if head[257:262] == b"ustar":
        return "none"
    raise UnsafeArchive("not a gzip or tar archive (no gzip or ustar magic)")


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Prefixed:
    """A reader that returns ``head`` before the rest of ``inner``."""

    def __init__(self, head: bytes, inner: _Reader) -> None:
        self._head = head
        self._inner = inner

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0 or size >= len(self._head):
                data, self._head = self._head, b""
                if size >= 0:
                    size -= len(data)
                return data + (self._inner.read(size) if size != 0 else b"")
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._inner.read(size)


class _Capped:
    """Counts the bytes ``inner`` produces and refuses to produce more than ``limit``.

    Every read is shortened to at most one byte past the cap, so a decompressor behind it never
    inflates more than that, however large the read tarfile asks for.
    """

    def __init__(self, inner: _Reader, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self.produced = 0

    def read(self, size: int = -1) -> bytes:
        allowed = self._limit - self.produced + 1
        if size < 0 or size > allowed:
            size = allowed
        data = self._inner.read(size)
        self.produced += len(data)
        if self.produced > self._limit:
            raise UnsafeArchive(
                f"archive inflates to more than {self._limit} bytes (decompression bomb?); "
                "rule: total uncompressed size cap"
            )
        return data


def _read_up_to(reader: _Reader, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = reader.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


class _CheckedTarInfo(tarfile.TarInfo):
    """Refuses oversized PAX / long-name headers and sparse files before tarfile reads them."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        info = super().frombuf(buf, encoding, errors)
        if info.type in _META_TYPES and info.size > _MAX_META_BYTES:
            raise UnsafeArchive(
                f"archive entry {info.name!r}: extended header of {info.size} bytes; "
                f"rule: at most {_MAX_META_BYTES} bytes"
            )
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise UnsafeArchive(
                f"archive entry {info.name!r}: {REFUSED_TYPES[tarfile.GNUTYPE_SPARSE]}"
            )
        return info


def _stream_cap(limits: SourceLimits) -> int:
    # File data is already capped from the headers; this allowance covers what tarfile reads
    # besides: up to three header blocks and 511 bytes of padding per entry, PAX records, the
    # end-of-archive blocks and record padding.
    return limits.max_total_bytes + limits.max_entries * (4 * _BLOCK - 1) + (16 << 20)


@contextlib.contextmanager
def open_tar(
    source: ArchiveInput, limits: SourceLimits
) -> Iterator[tuple[tarfile.TarFile, Compression]]:
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(source.open("rb")) if isinstance(source, Path) else source
        head = _read_up_to(raw, _BLOCK)
        compression = detect_compression(head)
        body: _Prefixed | gzip.GzipFile = _Prefixed(head, raw)
        if compression == "gzip":
            # GzipFile only ever calls read() on its file object (it never rewinds here).
            body = stack.enter_context(gzip.GzipFile(fileobj=cast(BinaryIO, body), mode="rb"))
        capped = _Capped(body, _stream_cap(limits))
        first = _read_up_to(capped, _BLOCK)
        if compression == "gzip" and first[257:262] != b"ustar":
            raise UnsafeArchive("gzip data is not a tar archive (no ustar magic)")
        # tarfile's stream mode only ever calls read() on its file object.
        tar = tarfile.open(  # noqa: SIM115 - closed by the exit stack
            fileobj=cast(BinaryIO, _Prefixed(first, capped)),
            mode="r|",
            tarinfo=_CheckedTarInfo,
            encoding="utf-8",
            errors="surrogateescape",
        )
        stack.callback(tar.close)
        yield tar, compression


@contextlib.contextmanager
def reading_errors() -> Iterator[None]:
    """Translate what a corrupt or hostile stream makes the readers raise."""
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UnsafeArchive(f"archive is corrupt or truncated: {exc}") from exc
    except RecursionError as exc:
        raise UnsafeArchive("archive has too many chained extended headers") from exc

"""Untrusted archives: checked entry by entry, turned into a normalised build context.

An archive is a gzip-compressed or plain tar, told apart by magic bytes (never by file name);
anything else (bzip2, xz, zstd, zip, a tar without the ``ustar`` magic) is refused. It is read
as a stream, header by header, and every entry is checked before a byte of its data is read:

- **names**: not empty, no NUL, no backslash, no control character, valid UTF-8, not absolute,
  no ``..`` component, at most 255 bytes a component and 4096 in all. ``.`` components and
  repeated slashes are dropped (``./a//b`` is ``a/b``); names are checked *after* PAX and GNU
  long-name headers have been applied, so a PAX header cannot rename an entry to a bad name;
- **types**: regular files, directories and symbolic links only. Device nodes, fifos, sparse
  and contiguous files are refused, and so are **all hard links** (even to an entry inside):
  git and GitHub archives never contain them, and a hard link is only ever safe when its
  target has been checked, which a stream reader cannot always know;
- **symbolic links**: the target is relative, and resolving it from the link's own directory,
  following the archive's other links on the way (at most 40), never leaves the archive root
  nor, for an entry of the build context, the context root. A target may dangle;
- **duplicates and shadowing**: a name appears once (``a/b`` and ``./a/b`` are the same name),
  and no entry lies under a name that is a file or a symbolic link (no writing through links);
- **caps** (:class:`~jobrunner.config.SourceLimits`): the entry count, each file's size and
  the total of the file sizes are checked from the headers, before the data is read. The
  decompressed stream itself is also capped (the total plus a bounded allowance for headers),
  counting the bytes actually produced, and each PAX or long-name header is capped, so a
  decompression bomb is stopped while it is being inflated and nothing of it reaches disk.

The build context is written as a new plain tar of the checked entries: owners 0:0 without
names, modes normalised the way git records them (files 0644, or 0755 when any execute bit
was set; directories 0755; no setuid, setgid or sticky bit), modification times set to
1980-01-01 so the same source gives the same context bytes (stable build cache and digest),
no extended attributes. The input is read twice (check everything, then write), so a file
object given as input must be seekable.

Which part of the archive is the context:

- without ``path``, a single top-level directory (as GitHub archives have, ``repo-v1.2/...``)
  is the context root; otherwise the archive root is;
- with ``path``, the path is taken inside that single top-level directory when the archive has
  one, and from the archive root otherwise (so ``path: sub`` means ``repo-v1.2/sub``). It must
  be relative without ``..`` and name a directory of the archive;
- ``dockerfile`` (default ``Dockerfile``), relative to the context root, must be a regular file.

Errors: :class:`~jobrunner.errors.UnsafeArchive` names the entry and the rule it breaks;
:class:`~jobrunner.errors.InvalidDefinition` for a bad ``path`` or ``dockerfile`` value;
:class:`~jobrunner.errors.SourceRejected` when ``path`` or the Dockerfile is not in the archive.

Everything here blocks on file I/O and decompression; async callers use ``asyncio.to_thread``.
The context file is meant to be handed to Docker as is (``APIClient.build(fileobj=...,
custom_context=True, dockerfile=report.dockerfile)``), never extracted on the host.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import posixpath
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final, Literal, Protocol, Self, cast

from jobrunner.config import SourceLimits
from jobrunner.errors import InvalidDefinition, SourceRejected, UnsafeArchive

__all__ = [
    "CONTEXT_MTIME",
    "ArchiveReport",
    "BuildContext",
    "build_context_file",
    "detect_compression",
    "inspect_archive",
    "write_build_context",
]

CONTEXT_MTIME: Final = 315_532_800
"""Modification time of every build-context entry: 1980-01-01T00:00:00Z (what reproducible
builds use, and the earliest time zip-based tools accept)."""

Compression = Literal["gzip", "none"]
Kind = Literal["file", "dir", "symlink"]
Source = Path | BinaryIO

_BLOCK: Final = tarfile.BLOCKSIZE
_GZIP_MAGIC: Final = b"\x1f\x8b"
_UNSUPPORTED_MAGIC: Final = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PK\x03\x04": "zip",
}
_MAX_NAME_BYTES: Final = 4096
_MAX_COMPONENT_BYTES: Final = 255
_MAX_LINK_HOPS: Final = 40
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
_REFUSED_TYPES: Final = {
    tarfile.LNKTYPE: "hard links are not allowed",
    tarfile.CHRTYPE: "device nodes are not allowed",
    tarfile.BLKTYPE: "device nodes are not allowed",
    tarfile.FIFOTYPE: "fifos are not allowed",
    tarfile.GNUTYPE_SPARSE: "sparse files are not allowed",
    tarfile.CONTTYPE: "contiguous files are not supported",
}


@dataclass(frozen=True, kw_only=True)
class ArchiveReport:
    """What a checked archive holds and which part of it is the build context."""

    compression: Compression
    entries: int
    """Entries in the archive (PAX and long-name headers are not entries)."""
    total_bytes: int
    """Sum of the sizes of the archive's regular files."""
    top_level: str | None
    """The archive's single top-level directory, if it has exactly one."""
    context_root: str
    """Archive path whose contents are the build context; ``""`` is the archive root."""
    context_entries: int
    context_bytes: int
    dockerfile: str
    """The Dockerfile's path inside the context."""


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    """A verified, normalised plain tar ready to be sent to Docker as the build context."""

    path: Path
    sha256: str
    """SHA256 of the context tar (the same source, path and Dockerfile give the same bytes)."""
    size: int
    report: ArchiveReport


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    kind: Kind
    size: int
    executable: bool
    target: str


@dataclass
class _Walk:
    """What pass one learns about the archive, entry by entry."""

    limits: SourceLimits
    entries: list[_Entry] = field(default_factory=list)
    kinds: dict[str, Kind] = field(default_factory=dict)
    parents: set[str] = field(default_factory=set)
    count: int = 0
    total: int = 0


# --- reading -------------------------------------------------------------------------------


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
                f"archive entry {info.name!r}: {_REFUSED_TYPES[tarfile.GNUTYPE_SPARSE]}"
            )
        return info


def _stream_cap(limits: SourceLimits) -> int:
    # File data is already capped from the headers; this allowance covers what tarfile reads
    # besides: up to three header blocks and 511 bytes of padding per entry, PAX records, the
    # end-of-archive blocks and record padding.
    return limits.max_total_bytes + limits.max_entries * (4 * _BLOCK - 1) + (16 << 20)


@contextlib.contextmanager
def _open_tar(
    source: Source, limits: SourceLimits
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
def _reading_errors() -> Iterator[None]:
    """Translate what a corrupt or hostile stream makes the readers raise."""
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UnsafeArchive(f"archive is corrupt or truncated: {exc}") from exc
    except RecursionError as exc:
        raise UnsafeArchive("archive has too many chained extended headers") from exc


# --- checking ------------------------------------------------------------------------------


def _refuse(raw_name: str, rule: str) -> UnsafeArchive:
    return UnsafeArchive(f"archive entry {raw_name!r}: {rule}")


def _bad_text(text: str) -> str | None:
    """Why ``text`` cannot be a path in an archive we accept, or None."""
    if not text:
        return "empty"
    if "\x00" in text:
        return "contains NUL"
    if "\\" in text:
        return "contains a backslash"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "contains a control character"
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if len(encoded) > _MAX_NAME_BYTES:
        return f"is longer than {_MAX_NAME_BYTES} bytes"
    return None


def _normalise_name(raw: str) -> str:
    """The canonical form of an entry name (``""`` for the root itself)."""
    problem = _bad_text(raw)
    if problem:
        raise _refuse(raw, f"name {problem}")
    if raw.startswith("/"):
        raise _refuse(raw, "absolute names are not allowed")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _refuse(raw, "names with a '..' component are not allowed")
    if any(len(part.encode()) > _MAX_COMPONENT_BYTES for part in parts):
        raise _refuse(raw, f"a name component is longer than {_MAX_COMPONENT_BYTES} bytes")
    return "/".join(parts)


def _ancestors(name: str) -> Iterator[str]:
    parent = posixpath.dirname(name)
    while parent:
        yield parent
        parent = posixpath.dirname(parent)


def _check_member(info: tarfile.TarInfo, walk: _Walk) -> _Entry | None:
    """Check one entry against every rule; None for the archive's root directory entry."""
    raw = info.name
    limits = walk.limits
    walk.count += 1
    if walk.count > limits.max_entries:
        raise _refuse(raw, f"more than {limits.max_entries} entries; rule: entry count cap")
    refused = _REFUSED_TYPES.get(info.type)
    if refused is not None:
        target = f" (to {info.linkname!r})" if info.type == tarfile.LNKTYPE else ""
        raise _refuse(raw, refused + target)
    kind: Kind
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = "file"
    elif info.type == tarfile.DIRTYPE:
        kind = "dir"
    elif info.type == tarfile.SYMTYPE:
        kind = "symlink"
    else:
        raise _refuse(raw, f"entry type {info.type!r} is not allowed")
    name = _normalise_name(raw)
    if not name:
        if kind != "dir":
            raise _refuse(raw, "name is empty")
        return None
    size = info.size if kind == "file" else 0
    if size > limits.max_file_bytes:
        raise _refuse(raw, f"{size} bytes; rule: at most {limits.max_file_bytes} bytes a file")
    walk.total += size
    if walk.total > limits.max_total_bytes:
        raise _refuse(
            raw, f"total size passes {limits.max_total_bytes} bytes; rule: total size cap"
        )
    target = ""
    if kind == "symlink":
        target = info.linkname
        problem = _bad_text(target)
        if problem:
            raise _refuse(raw, f"symbolic link target {problem}")
        if target.startswith("/"):
            raise _refuse(raw, f"symbolic link to absolute path {target!r} is not allowed")
        if posixpath.normpath(posixpath.join(posixpath.dirname(name), target)).startswith(".."):
            raise _refuse(raw, f"symbolic link to {target!r} points outside the archive")
    if name in walk.kinds:
        raise _refuse(raw, f"duplicate entry (as {name!r})")
    if kind != "dir" and name in walk.parents:
        raise _refuse(raw, f"a {kind} where other entries have it as their directory")
    for ancestor in _ancestors(name):
        above = walk.kinds.get(ancestor)
        if above is not None and above != "dir":
            raise _refuse(raw, f"lies inside {ancestor!r}, which is a {above}")
        walk.parents.add(ancestor)
    walk.kinds[name] = kind
    return _Entry(
        name=name, kind=kind, size=size, executable=bool(info.mode & 0o111), target=target
    )


def _stays_inside(link: str, links: dict[str, str]) -> bool:
    """Whether resolving the symbolic link ``link`` never goes above the root.

    Resolution follows the other links in ``links`` (names and targets relative to the same
    root), as the kernel would, so ``a -> b/..`` where ``b`` is itself a link is judged by
    where ``b`` leads rather than by the text.
    """
    position: list[str] = link.split("/")[:-1]
    pending: list[str] = links[link].split("/")
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not position:
                return False
            position.pop()
            continue
        candidate = "/".join([*position, part])
        target = links.get(candidate)
        if target is None:
            position.append(part)
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS or target.startswith("/"):
            return False
        pending = target.split("/") + pending
    return True


def _check_links(entries: list[_Entry], root: str, scope: str) -> None:
    prefix = f"{root}/" if root else ""
    links = {
        entry.name[len(prefix) :]: entry.target
        for entry in entries
        if entry.kind == "symlink" and entry.name.startswith(prefix)
    }
    for name, target in links.items():
        if not _stays_inside(name, links):
            raise _refuse(prefix + name, f"symbolic link to {target!r} points outside the {scope}")


def _relative_setting(value: str, setting: str) -> str:
    """A ``path`` / ``dockerfile`` value as a normalised relative path."""
    problem = _bad_text(value)
    if problem:
        raise InvalidDefinition(setting, f"{problem}")
    if value.startswith("/"):
        raise InvalidDefinition(setting, "must be a relative path")
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidDefinition(setting, "must not contain '..'")
    return "/".join(parts)


def _top_level(walk: _Walk) -> str | None:
    firsts = {name.split("/", 1)[0] for name in walk.kinds}
    if len(firsts) != 1:
        return None
    (only,) = firsts
    if walk.kinds.get(only, "dir") != "dir" or only not in walk.parents:
        return None
    return only


def _walk(tar: tarfile.TarFile, limits: SourceLimits) -> _Walk:
    walk = _Walk(limits=limits)
    for info in tar:
        entry = _check_member(info, walk)
        if entry is not None:
            walk.entries.append(entry)
    return walk


def _plan(
    walk: _Walk, compression: Compression, subdir: str | None, dockerfile: str
) -> ArchiveReport:
    top = _top_level(walk)
    if subdir is None:
        root = top or ""
    else:
        relative = _relative_setting(subdir, "path")
        root = "/".join(part for part in (top, relative) if part)
        if root and not (walk.kinds.get(root) == "dir" or root in walk.parents):
            where = f" (looked for {root!r})" if top else ""
            raise SourceRejected(f"path {subdir!r} is not a directory in the archive{where}")
    dockerfile_rel = _relative_setting(dockerfile, "dockerfile")
    if not dockerfile_rel:
        raise InvalidDefinition("dockerfile", "must name a file")
    prefix = f"{root}/" if root else ""
    if walk.kinds.get(prefix + dockerfile_rel) != "file":
        raise SourceRejected(
            f"the build context has no Dockerfile at {dockerfile_rel!r}"
            + (f" (context is the archive's {root!r})" if root else "")
        )
    _check_links(walk.entries, "", "archive")
    if root:
        _check_links(walk.entries, root, f"build context {root!r}")
    in_context = [entry for entry in walk.entries if entry.name.startswith(prefix)]
    return ArchiveReport(
        compression=compression,
        entries=walk.count,
        total_bytes=walk.total,
        top_level=top,
        context_root=root,
        context_entries=len(in_context),
        context_bytes=sum(entry.size for entry in in_context),
        dockerfile=dockerfile_rel,
    )


# --- public API ----------------------------------------------------------------------------


def _inspect(
    source: Source, limits: SourceLimits, subdir: str | None, dockerfile: str
) -> tuple[ArchiveReport, list[_Entry]]:
    with _reading_errors(), _open_tar(source, limits) as (tar, compression):
        walk = _walk(tar, limits)
    return _plan(walk, compression, subdir, dockerfile), walk.entries


def inspect_archive(
    source: Source, limits: SourceLimits, subdir: str | None, *, dockerfile: str = "Dockerfile"
) -> ArchiveReport:
    """Check every entry of ``source`` (a path or a binary file object) and plan the context.

    Reads the archive once, writing nothing. Raises UnsafeArchive, InvalidDefinition or
    SourceRejected as described in the module docstring.
    """
    return _inspect(source, limits, subdir, dockerfile)[0]


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self._out.write(data)


def _context_info(entry: _Entry, name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = CONTEXT_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "file":
        info.type = tarfile.REGTYPE
        info.size = entry.size
        info.mode = 0o755 if entry.executable else 0o644
    elif entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
        info.mode = 0o777
    return info


def write_build_context(
    source: Source,
    out: BinaryIO,
    limits: SourceLimits,
    subdir: str | None,
    *,
    dockerfile: str = "Dockerfile",
) -> tuple[ArchiveReport, str, int]:
    """Check ``source`` completely, then write its build context to ``out`` as a plain tar.

    Nothing is written unless every entry passed. Returns the report and the SHA256 and size
    of the bytes written. A file-object ``source`` must be seekable (it is read twice).
    """
    start = None if isinstance(source, Path) else source.tell()
    report, entries = _inspect(source, limits, subdir, dockerfile)
    if not isinstance(source, Path):
        source.seek(start or 0)
    prefix = f"{report.context_root}/" if report.context_root else ""
    writer = _HashingWriter(out)
    checked = _Walk(limits=limits)
    index = 0
    with (
        _reading_errors(),
        _open_tar(source, limits) as (tar, _compression),
        tarfile.open(
            fileobj=cast(BinaryIO, writer),  # stream mode only ever calls write()
            mode="w|",
            format=tarfile.PAX_FORMAT,
            encoding="utf-8",
        ) as context,
    ):
        for info in tar:
            # The same checks again, compared with the first pass: what is written is
            # exactly what was checked, even if the file changed in between.
            entry = _check_member(info, checked)
            if entry is None:
                continue
            if index >= len(entries) or entries[index] != entry:
                raise UnsafeArchive("archive changed while it was being read")
            index += 1
            if not entry.name.startswith(prefix):
                continue
            context_info = _context_info(entry, entry.name[len(prefix) :])
            if entry.kind == "file":
                context.addfile(context_info, tar.extractfile(info))
            else:
                context.addfile(context_info)
    if index != len(entries):
        raise UnsafeArchive("archive changed while it was being read")
    return report, writer.digest.hexdigest(), writer.size


def build_context_file(
    source: Source,
    dest_dir: Path,
    limits: SourceLimits,
    subdir: str | None,
    *,
    dockerfile: str = "Dockerfile",
) -> BuildContext:
    """:func:`write_build_context` into a new file in ``dest_dir`` (removed on any error)."""
    fd, name = tempfile.mkstemp(dir=dest_dir, prefix="context-", suffix=".tar")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            report, sha256, size = write_build_context(
                source, out, limits, subdir, dockerfile=dockerfile
            )
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
    return BuildContext(path=path, sha256=sha256, size=size, report=report)

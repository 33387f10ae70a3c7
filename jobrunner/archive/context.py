"""Turning a checked archive into a build context: a new, normalised plain tar.

The build context is written as a new plain tar of the checked entries: owners 0:0 without
names, modes normalised the way git records them (files 0644, or 0755 when any execute bit
was set; directories 0755; no setuid, setgid or sticky bit), modification times set to
1980-01-01 so the same source gives the same context bytes (stable build cache and digest),
no extended attributes. The input is read twice (check everything, then write, comparing
each entry with the first pass), so a file object given as input must be seekable.

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
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, cast

from jobrunner.archive.entries import Entry, Walk, bad_text, check_links, check_member, walk_archive
from jobrunner.archive.reading import ArchiveInput, Compression, open_tar, reading_errors
from jobrunner.config import SourceLimits
from jobrunner.errors import InvalidDefinition, SourceRejected, UnsafeArchive
from jobrunner.hashing import HashingWriter

__all__ = [
    "CONTEXT_MTIME",
    "ArchiveReport",
    "BuildContext",
    "build_context_file",
    "inspect_archive",
    "read_context_file",
    "write_build_context",
]

CONTEXT_MTIME: Final = 315_532_800
"""Modification time of every build-context entry: 1980-01-01T00:00:00Z (what reproducible
builds use, and the earliest time zip-based tools accept)."""


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


def _relative_setting(value: str, setting: str) -> str:
    """A ``path`` / ``dockerfile`` value as a normalised relative path."""
    problem = bad_text(value)
    if problem:
        raise InvalidDefinition(setting, f"{problem}")
    if value.startswith("/"):
        raise InvalidDefinition(setting, "must be a relative path")
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidDefinition(setting, "must not contain '..'")
    return "/".join(parts)


def _top_level(walk: Walk) -> str | None:
    firsts = {name.split("/", 1)[0] for name in walk.kinds}
    if len(firsts) != 1:
        return None
    (only,) = firsts
    if walk.kinds.get(only, "dir") != "dir" or only not in walk.parents:
        return None
    return only


def _plan(
    walk: Walk, compression: Compression, subdir: str | None, dockerfile: str
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
    check_links(walk.entries, "", "archive")
    if root:
        check_links(walk.entries, root, f"build context {root!r}")
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


def _inspect(
    source: ArchiveInput, limits: SourceLimits, subdir: str | None, dockerfile: str
) -> tuple[ArchiveReport, list[Entry]]:
    with reading_errors(), open_tar(source, limits) as (tar, compression):
        walk = walk_archive(tar, limits)
    return _plan(walk, compression, subdir, dockerfile), walk.entries


def inspect_archive(
    source: ArchiveInput,
    limits: SourceLimits,
    subdir: str | None,
    *,
    dockerfile: str = "Dockerfile",
) -> ArchiveReport:
    """Check every entry of ``source`` (a path or a binary file object) and plan the context.

    Reads the archive once, writing nothing. Raises UnsafeArchive, InvalidDefinition or
    SourceRejected as described in the module docstring.
    """
    return _inspect(source, limits, subdir, dockerfile)[0]


def _context_info(entry: Entry, name: str) -> tarfile.TarInfo:
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
    source: ArchiveInput,
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
    writer = HashingWriter(out)
    checked = Walk(limits=limits)
    index = 0
    with (
        reading_errors(),
        open_tar(source, limits) as (tar, _compression),
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
            entry = check_member(info, checked)
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
    source: ArchiveInput,
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


def read_context_file(context: Path, name: str, *, max_bytes: int) -> bytes:
    """The bytes of the regular file ``name`` of a build context made here (a plain tar of
    checked entries); :class:`SourceRejected` when it is missing, not a regular file or
    larger than ``max_bytes``."""
    wanted = _relative_setting(name, "dockerfile")
    with tarfile.open(context, mode="r:") as tar:
        for info in tar:
            if info.name != wanted:
                continue
            if not info.isreg():
                break
            if info.size > max_bytes:
                raise SourceRejected(f"{wanted}: larger than {max_bytes} bytes")
            data = tar.extractfile(info)
            assert data is not None  # a regular file always has data
            return data.read()
    raise SourceRejected(f"the build context has no regular file {wanted!r}")

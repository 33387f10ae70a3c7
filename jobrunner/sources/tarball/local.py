"""Tarballs from this host: a file under ``WORKER_JOB_TARBALL_DIR``.

:func:`resolve_tarball_path`: the path is relative, without ``..``, resolved inside
``tarball_dir`` with symbolic links followed and the result required to stay inside; the file
is opened without following a final link, checked again through the open descriptor (so a
link swapped in after the check does not count), and hashed (or copied and hashed) from that
descriptor, capped at ``tarball_max_bytes``. A file with more than one hard link, or on
another file system than ``tarball_dir`` (a mount inside it), is refused: its bytes could
be anybody's file outside the directory, which the path rules cannot see.

:func:`check_inside` is the lighter check made when a definition is saved.

Everything here blocks on file I/O; async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from jobrunner.cache import copy_and_hash, normalise_sha256, remove_quietly
from jobrunner.config import RunnerConfig
from jobrunner.errors import ChecksumMismatch, InvalidDefinition, NotAllowed, SourceRejected
from jobrunner.sources.tarball.verified import VerifiedTarball

__all__ = ["check_inside", "resolve_tarball_path"]


def check_inside(root: Path, relative: str) -> None:
    """A ``tarballPath`` that leads out of ``root`` through a symbolic link that exists now
    is refused (:class:`InvalidDefinition`) when the definition is saved."""
    base = root.resolve()
    try:
        target = (base / relative).resolve()
    except (OSError, RuntimeError) as exc:  # e.g. a link loop
        raise InvalidDefinition("tarballPath", f"cannot be resolved: {exc}") from None
    if not target.is_relative_to(base):
        raise InvalidDefinition("tarballPath", "leads outside WORKER_JOB_TARBALL_DIR")


def _checked_relative(relative_path: str) -> Path:
    if not relative_path or "\x00" in relative_path:
        raise NotAllowed("tarball path: must be a non-empty relative path")
    if relative_path.startswith("/"):
        raise NotAllowed(f"tarball path {relative_path!r}: must be relative to the tarball dir")
    if ".." in relative_path.split("/"):
        raise NotAllowed(f"tarball path {relative_path!r}: '..' would escape the tarball dir")
    return Path(relative_path)


def _fd_path(fd: int) -> Path | None:
    """The path the kernel has for an open descriptor (None where /proc is missing)."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


def resolve_tarball_path(
    relative_path: str, sha256: str | None, config: RunnerConfig, dest_dir: Path | None = None
) -> VerifiedTarball:
    """Verify the tarball at ``relative_path`` inside ``config.tarball_dir``.

    With ``dest_dir`` the bytes are copied there while they are hashed, and the copy is what
    the returned value names: later changes to the original cannot reach the build. Without
    it, the original file is named and the caller accepts that it may change after the check.

    Blocking (file I/O); async callers use ``asyncio.to_thread``.

    Raises:
        NotAllowed: path sources are off (no ``tarball_dir``), or the path is absolute, has
            ``..`` or leads outside ``tarball_dir`` through a symbolic link.
        SourceRejected: no such file, not a regular file, or larger than the cap.
        ChecksumMismatch: the file does not hash to ``sha256``.
        InvalidDefinition: ``sha256`` is not 64 hex digits.
    """
    pinned = normalise_sha256(sha256) if sha256 is not None else None
    if config.tarball_dir is None:
        raise NotAllowed("tarball path sources are off: WORKER_JOB_TARBALL_DIR is not set")
    relative = _checked_relative(relative_path)
    try:
        root = config.tarball_dir.resolve(strict=True)
        candidate = (root / relative).resolve(strict=True)
    except FileNotFoundError as exc:
        raise SourceRejected(f"tarball path {relative_path!r}: no such file") from exc
    except RuntimeError as exc:  # a symbolic link loop
        raise NotAllowed(f"tarball path {relative_path!r}: {exc}") from exc
    if not candidate.is_relative_to(root):
        raise NotAllowed(f"tarball path {relative_path!r}: leads outside the tarball dir")
    try:
        fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SourceRejected(f"tarball path {relative_path!r}: cannot open: {exc}") from exc
    try:
        opened_stat = os.fstat(fd)
        if not stat.S_ISREG(opened_stat.st_mode):
            raise SourceRejected(f"tarball path {relative_path!r}: not a regular file")
        if opened_stat.st_nlink != 1:
            raise NotAllowed(
                f"tarball path {relative_path!r}: the file has {opened_stat.st_nlink} hard "
                "links; a hard-linked file may be a file from outside the tarball dir"
            )
        if opened_stat.st_dev != root.stat().st_dev:
            raise NotAllowed(
                f"tarball path {relative_path!r}: the file is on another file system than the "
                "tarball dir"
            )
        # Checked again through the descriptor: a component swapped for a link after
        # resolve() is caught here.
        opened = _fd_path(fd)
        if opened is not None and not opened.is_relative_to(root):
            raise NotAllowed(f"tarball path {relative_path!r}: leads outside the tarball dir")
        src = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with src:
        if dest_dir is None:
            actual, size = copy_and_hash(src, None, max_bytes=config.tarball_max_bytes)
            path = candidate
        else:
            dest_dir.mkdir(parents=True, exist_ok=True)
            tmp = dest_dir / f".copy-{secrets.token_hex(8)}.part"
            try:
                with tmp.open("xb") as out:
                    actual, size = copy_and_hash(src, out, max_bytes=config.tarball_max_bytes)
                if pinned is not None and actual != pinned:
                    raise _mismatch(relative_path, actual, pinned)
                path = dest_dir / f"{actual}.tarball"
                os.replace(tmp, path)
            except BaseException:
                remove_quietly(tmp)
                raise
    if pinned is not None and actual != pinned:
        raise _mismatch(relative_path, actual, pinned)
    return VerifiedTarball(path=path, sha256=actual, size=size, origin=relative_path)


def _mismatch(relative_path: str, actual: str, pinned: str) -> ChecksumMismatch:
    return ChecksumMismatch(
        f"tarball path {relative_path!r}: SHA256 is {actual}, expected {pinned}"
    )

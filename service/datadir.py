"""The data directory is private: 0700 directories and 0600 files, whatever the umask.

Everything Longshore keeps (the embedded database, events and the audit log, artifacts, run
work directories, the admin token) may hold job output, source code or credentials, so no
other local user may read it. Two measures make that hold:

- every ``longshore`` command sets the process umask to ``077`` before it creates anything
  (:func:`restrict_new_files`), so files and directories created by any code path, ours or a
  library's (SQLite's ``-wal`` and ``-shm`` files included), are private from birth;
- ``serve`` and ``worker`` tighten what an earlier version or another umask left readable
  (:func:`secure_data_dir`), once at start, with one log line saying how many paths changed.

The admin token file is the exception: one that others could read may have leaked, so it is
not silently tightened; ``serve`` refuses to start until it is replaced or fixed
(``service.api_token``).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from service.api_token import TOKEN_FILE

logger = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700


def restrict_new_files() -> None:
    """Make everything this process creates from now on private to its user."""
    os.umask(PRIVATE_UMASK)


def secure_data_dir(data_dir: Path, extra: Iterable[Path] = ()) -> int:
    """Create ``data_dir`` (0700) if needed and take group and other permissions away from
    every directory and file under it and under ``extra`` (directories configured outside
    it, such as a separate event directory). Symbolic links are neither followed nor
    changed. Returns how many paths were tightened."""
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    roots = [data_dir, *(path for path in extra if path.exists())]
    changed = sum(_tighten_tree(root) for root in dict.fromkeys(roots))
    if changed:
        logger.warning(
            "tightened permissions in the data directory",
            extra={"data_dir": str(data_dir), "paths": changed},
        )
    return changed


def _tighten_tree(root: Path) -> int:
    changed = _tighten(root)
    for folder, dirs, files in os.walk(root, followlinks=False):
        base = Path(folder)
        for name in dirs:
            changed += _tighten(base / name)
        for name in files:
            if base == root and name == TOKEN_FILE:
                continue  # refused at start if readable by others: see the module docstring
            changed += _tighten(base / name)
    return changed


def _tighten(path: Path) -> int:
    """Take group and other permissions away from ``path`` (the owner's own bits stay)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return 0
    if stat.S_ISLNK(info.st_mode) or not stat.S_IMODE(info.st_mode) & 0o077:
        return 0
    # Through a descriptor opened without following links: a path swapped for a link after
    # the check is refused by the open, never followed to another file.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~PRIVATE_UMASK)
    finally:
        os.close(fd)
    return 1

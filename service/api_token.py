"""The admin API's generated bearer token, kept in ``<data dir>/admin-token`` (mode 0600).

Generated at the first start of ``longshore serve`` without ``WORKER_ADMIN_TOKEN`` and
without mTLS, shown once, then read back at every start; a file that is not a private
regular file of this user is refused.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from admin.config import parse_tokens
from service.errors import SettingsError

__all__ = ["PASSWORD_FILE", "TOKEN_FILE", "load_or_create_token"]

logger = logging.getLogger(__name__)

TOKEN_FILE = "admin-token"  # noqa: S105 - a file name, not a secret
"""Name of the generated bearer token's file in the data dir."""
PASSWORD_FILE = "admin-password"  # noqa: S105 - a file name, not a secret
"""Name of the ``basic`` mode's generated password's file in the data dir."""


def load_or_create_token(path: Path) -> tuple[str, bool]:
    """The token kept in ``path``, creating it (mode 0600, exclusively) if it does not exist
    yet; returns ``(token, created)``. A file that is not a regular file of this user,
    readable by its owner only, is refused with :class:`SettingsError`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return _read_token(path), False
    except OSError as exc:
        raise SettingsError(f"cannot create the admin token file {path}: {exc}") from None
    token = secrets.token_urlsafe(32)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise SettingsError(f"cannot write the admin token file {path}: {exc}") from None
    logger.info("admin token generated", extra={"path": str(path)})
    return token, True


def _read_token(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise SettingsError(
            f"cannot read the admin token file {path}: {exc.strerror or exc} "
            "(it must be a regular file, not a symbolic link)"
        ) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SettingsError(f"the admin token file {path} is not a regular file")
        if info.st_uid != os.geteuid():
            raise SettingsError(
                f"the admin token file {path} is owned by uid {info.st_uid}, not by this user "
                f"(uid {os.geteuid()}): remove it or fix its owner"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise SettingsError(
                f"the admin token file {path} has mode {mode:04o}: it must be readable by its "
                f"owner only (chmod 600 {path})"
            )
        raw = handle.read(4096)
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        if not text or not parse_tokens(text):
            raise ValueError("empty")
    except ValueError:
        raise SettingsError(
            f"the admin token file {path} is empty or malformed: remove it to generate a new "
            "token, or write a token into it"
        ) from None
    return text

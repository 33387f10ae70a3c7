"""Encryption of secret values at rest: AES-256-GCM with a key kept in a file.

The key file holds 32 random bytes (hex-encoded, one line). :func:`load_or_create_key`
makes it with mode 0600 when it is absent (the service does this on its first start) and
refuses a file that others may read. Every value gets a fresh 12-byte nonce; the stored
form is ``nonce || ciphertext || tag``, and the secret's name is the associated data, so a
ciphertext moved to another name does not decrypt.
"""

from __future__ import annotations

import os
import secrets as random
import stat
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from store.secrets.errors import SecretKeyError

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12


def load_or_create_key(path: Path) -> bytes:
    """The key in ``path``, made (0600, parent directories 0700) when the file is absent.
    Raises :class:`SecretKeyError` for a file that is not a key or that group or others
    may read."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = random.token_bytes(KEY_BYTES)
    # Written whole under a private name, then linked to its own name (which fails if the
    # file exists): a process starting at the same moment never reads a key half written.
    partial = path.with_name(f".{path.name}.{random.token_hex(8)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(key.hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(partial, path)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: create it in place
            _create_in_place(path, key)
    except FileExistsError:  # made by another process meanwhile
        return _read_key(path)
    finally:
        partial.unlink(missing_ok=True)
    return key


def _create_in_place(path: Path, key: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex() + "\n")
        out.flush()
        os.fsync(out.fileno())


def _read_key(path: Path) -> bytes:
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretKeyError(
            f"the secrets key file {path} may be read by others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); make it 0600"
        )
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise SecretKeyError(f"the secrets key file {path} does not hold a {KEY_BYTES}-byte key")
    return key


class SecretBox:
    """Seals and opens secret values with one key: ``key`` itself, or the key file at that
    path, read (or made, see :func:`load_or_create_key`) by :meth:`load` or on first use, so
    a process that never touches a secret never makes a key file."""

    def __init__(self, key: bytes | Path) -> None:
        self._path: Path | None = None
        self._cipher: AESGCM | None = None
        if isinstance(key, Path):
            self._path = key
        elif len(key) != KEY_BYTES:
            raise SecretKeyError(f"a secrets key has {KEY_BYTES} bytes")
        else:
            self._cipher = AESGCM(key)

    def load(self) -> None:
        """Read or make the key file now (blocking: call it in a thread)."""
        self._aead()

    def _aead(self) -> AESGCM:
        if self._cipher is None:
            assert self._path is not None
            self._cipher = AESGCM(load_or_create_key(self._path))
        return self._cipher

    def seal(self, name: str, value: bytes) -> bytes:
        """``value`` encrypted for the secret called ``name``."""
        nonce = random.token_bytes(NONCE_BYTES)
        return nonce + self._aead().encrypt(nonce, value, name.encode("utf-8"))

    def open(self, name: str, sealed: bytes) -> bytes:
        """The value sealed for ``name``; raises :class:`SecretKeyError` when it does not
        decrypt (another key, another name, or altered bytes)."""
        nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        try:
            return self._aead().decrypt(nonce, body, name.encode("utf-8"))
        except (InvalidTag, ValueError):
            raise SecretKeyError(
                f"secret {name!r} does not decrypt with the secrets key (another key?)"
            ) from None

"""The contract of the secret store, and its records.

Both backends (``store.secrets.sqlite``, ``store.secrets.postgres``) keep each value sealed
by a :class:`~store.secrets.crypto.SecretBox` (AES-GCM): the database holds no value in
clear, and nothing the store returns carries a value except :meth:`SecretStore.reveal`,
which the job runner calls for the secrets a run is granted. Every method may raise
:class:`store.errors.StoreUnavailable`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from store.secrets.errors import InvalidSecret

SECRET_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
"""What a secret's name looks like."""

MAX_SECRET_BYTES: Final = 64 * 1024
"""The largest secret value."""


@dataclass(frozen=True, kw_only=True)
class SecretInfo:
    """What may be shown of a secret: its name, when it was made and last set, and the size
    of its value."""

    name: str
    size_bytes: int
    created_at: datetime
    updated_at: datetime


def check_name(name: object) -> str:
    """``name`` if it is a valid secret name, else :class:`InvalidSecret`."""
    if not isinstance(name, str) or not SECRET_NAME.fullmatch(name):
        raise InvalidSecret(
            f"secret name {str(name)[:80]!r} is invalid: 1-63 of A-Z, a-z, 0-9, '.', '_', "
            "'-', starting with a letter or digit"
        )
    return name


def check_value(name: str, value: object) -> bytes:
    """``value`` if it may be stored (1 byte to :data:`MAX_SECRET_BYTES`), else
    :class:`InvalidSecret` (whose message never shows the value)."""
    if not isinstance(value, bytes):
        raise InvalidSecret(f"the value of secret {name!r} must be bytes")
    if not value:
        raise InvalidSecret(f"the value of secret {name!r} is empty")
    if len(value) > MAX_SECRET_BYTES:
        raise InvalidSecret(
            f"the value of secret {name!r} has {len(value)} bytes; at most {MAX_SECRET_BYTES}"
        )
    return value


class SecretStore(Protocol):
    """Secrets, keyed by name, sealed at rest."""

    async def put(self, name: str, value: bytes) -> tuple[SecretInfo, bool]:
        """Seal and save ``value`` under ``name`` (replacing a value set before); return the
        secret's info and whether it is new. Raises :class:`InvalidSecret` for a bad name or
        value."""
        ...

    async def list_secrets(self) -> list[SecretInfo]:
        """Every secret's info, by name."""
        ...

    async def existing(self, names: Collection[str]) -> set[str]:
        """Those of ``names`` that are secrets."""
        ...

    async def reveal(self, names: Collection[str]) -> dict[str, bytes]:
        """The values of ``names``, decrypted. Raises :class:`SecretNotFound` for the first
        unknown name and :class:`SecretKeyError` for a value that does not decrypt."""
        ...

    async def delete(self, name: str) -> bool:
        """Delete the secret called ``name``; return whether there was one."""
        ...

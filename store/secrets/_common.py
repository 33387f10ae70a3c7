"""What both secret-store backends share: sealing, and turning rows into records."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

from store.secrets.crypto import NONCE_BYTES, SecretBox
from store.secrets.errors import SecretNotFound
from store.secrets.protocol import SecretInfo, check_name

_TAG_BYTES = 16


def info(name: str, sealed_bytes: int, created_at: datetime, updated_at: datetime) -> SecretInfo:
    """The info of a secret whose sealed form has ``sealed_bytes``."""
    return SecretInfo(
        name=name,
        size_bytes=max(sealed_bytes - NONCE_BYTES - _TAG_BYTES, 0),
        created_at=created_at,
        updated_at=updated_at,
    )


def wanted(names: Collection[str]) -> list[str]:
    return sorted({check_name(name) for name in names})


def opened(box: SecretBox, names: Iterable[str], rows: Mapping[str, bytes]) -> dict[str, bytes]:
    """The values of ``names`` from their sealed ``rows``; the first missing name raises."""
    out: dict[str, bytes] = {}
    for name in names:
        sealed = rows.get(name)
        if sealed is None:
            raise SecretNotFound(name)
        out[name] = box.open(name, bytes(sealed))
    return out

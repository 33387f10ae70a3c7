"""Secrets stored in PostgreSQL (see :class:`store.secrets.protocol.SecretStore`; the SQL
is in ``store/sql/postgres/secrets.sql``)."""

from __future__ import annotations

from collections.abc import Collection

from store.db.postgres import PostgresDatabase, Row
from store.secrets import _common
from store.secrets.crypto import SecretBox
from store.secrets.protocol import SecretInfo, check_name, check_value
from store.sqlfiles import queries

__all__ = ["PostgresSecretStore"]


def _info(row: Row) -> SecretInfo:
    return _common.info(row["name"], row["sealed_bytes"], row["created_at"], row["updated_at"])


class PostgresSecretStore:
    """:class:`~store.secrets.protocol.SecretStore` in PostgreSQL, sealing with ``box``."""

    def __init__(self, db: PostgresDatabase, box: SecretBox) -> None:
        self._db = db
        self._box = box
        self._sql = queries("postgres", "secrets")

    async def put(self, name: str, value: bytes) -> tuple[SecretInfo, bool]:
        check_value(check_name(name), value)
        row = await self._db.fetchrow(self._sql["put_secret"], name, self._box.seal(name, value))
        assert row is not None
        return _info(row), bool(row["created"])

    async def list_secrets(self) -> list[SecretInfo]:
        return [_info(row) for row in await self._db.fetch(self._sql["list_secrets"])]

    async def existing(self, names: Collection[str]) -> set[str]:
        return set(await self._sealed(names))

    async def reveal(self, names: Collection[str]) -> dict[str, bytes]:
        wanted = _common.wanted(names)
        return _common.opened(self._box, wanted, await self._sealed(wanted))

    async def delete(self, name: str) -> bool:
        return await self._db.fetchrow(self._sql["delete_secret"], name) is not None

    async def _sealed(self, names: Collection[str]) -> dict[str, bytes]:
        found = await self._db.fetch(self._sql["secrets_named"], _common.wanted(names))
        return {row["name"]: bytes(row["ciphertext"]) for row in found}

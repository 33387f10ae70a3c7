"""Secrets on the embedded SQLite database (see :class:`store.secrets.protocol.SecretStore`;
the SQL is in ``store/sql/sqlite/secrets.sql``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection

from store.db.sqlite import SqliteDatabase
from store.queue._sqlite_rows import from_us, now_us
from store.secrets import _common
from store.secrets.crypto import SecretBox
from store.secrets.protocol import SecretInfo, check_name, check_value
from store.sqlfiles import queries

__all__ = ["SqliteSecretStore"]


def q(name: str) -> str:
    return queries("sqlite", "secrets")[name]


def _info(row: sqlite3.Row) -> SecretInfo:
    return _common.info(
        row["name"], row["sealed_bytes"], from_us(row["created_at"]), from_us(row["updated_at"])
    )


class SqliteSecretStore:
    """:class:`~store.secrets.protocol.SecretStore` on SQLite, sealing with ``box``."""

    def __init__(self, db: SqliteDatabase, box: SecretBox) -> None:
        self._db = db
        self._box = box

    async def put(self, name: str, value: bytes) -> tuple[SecretInfo, bool]:
        check_value(check_name(name), value)
        params = {"name": name, "ciphertext": self._box.seal(name, value), "now": now_us()}
        row = await self._db.write(lambda conn: conn.execute(q("put_secret"), params).fetchone())
        saved = _info(row)
        return saved, saved.created_at == saved.updated_at

    async def list_secrets(self) -> list[SecretInfo]:
        found = await self._db.read(lambda conn: conn.execute(q("list_secrets")).fetchall())
        return [_info(row) for row in found]

    async def existing(self, names: Collection[str]) -> set[str]:
        return set(await self._sealed(names))

    async def reveal(self, names: Collection[str]) -> dict[str, bytes]:
        wanted = _common.wanted(names)
        return _common.opened(self._box, wanted, await self._sealed(wanted))

    async def delete(self, name: str) -> bool:
        params = {"name": name}
        count = await self._db.write(lambda conn: conn.execute(q("delete_secret"), params).rowcount)
        return bool(count)

    async def _sealed(self, names: Collection[str]) -> dict[str, bytes]:
        params = {"names": json.dumps(_common.wanted(names))}
        found = await self._db.read(
            lambda conn: conn.execute(q("secrets_named"), params).fetchall()
        )
        return {row["name"]: bytes(row["ciphertext"]) for row in found}

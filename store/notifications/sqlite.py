"""Notification rules on the embedded SQLite database.

Implements :class:`store.notifications.protocol.NotificationStore`; the semantics live in the
protocol's docstrings. The SQL is in ``store/sql/sqlite/notifications.sql``.
"""

from __future__ import annotations

import json
import sqlite3

from store.db.sqlite import SqliteDatabase
from store.notifications._sealing import keeping_secret, sealed
from store.notifications.models import (
    NotificationRule,
    check_rule,
    plain_secret,
    rule_from_row,
    rule_to_row,
)
from store.queue._sqlite_rows import from_us, now_us
from store.secrets.crypto import SecretBox
from store.sqlfiles import queries

__all__ = ["SqliteNotificationStore"]


def q(name: str) -> str:
    return queries("sqlite", "notifications")[name]


def _stored(row: sqlite3.Row) -> NotificationRule:
    return rule_from_row(row[0], json.loads(row[1]), from_us(row[2]), from_us(row[3]))


class SqliteNotificationStore:
    """:class:`~store.notifications.protocol.NotificationStore` on SQLite, sealing rule
    secrets with ``box``."""

    def __init__(self, db: SqliteDatabase, box: SecretBox) -> None:
        self._db = db
        self._box = box

    def _rule(self, row: sqlite3.Row) -> NotificationRule:
        return sealed(self._box, _stored(row))

    async def upsert(self, rule: NotificationRule) -> tuple[NotificationRule, bool]:
        now = now_us()

        def run(conn: sqlite3.Connection) -> tuple[NotificationRule, bool]:
            found = conn.execute(q("get_rule"), {"name": rule.name}).fetchone()
            checked = check_rule(keeping_secret(rule, None if found is None else _stored(found)))
            body = json.dumps(rule_to_row(sealed(self._box, checked)))
            row = conn.execute(q("upsert_rule"), {"name": checked.name, "body": body, "now": now})
            saved = row.fetchone()
            return self._rule(saved), bool(saved[4])

        return await self._db.write(run)

    async def seal_plain_secrets(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            # Zero the freed bytes of the rewritten rows, so the clear text leaves the file.
            conn.execute(q("secure_delete_on"))
            try:
                count = 0
                for row in conn.execute(q("list_rules")).fetchall():
                    if plain_secret(json.loads(row[1])) is None:
                        continue
                    body = json.dumps(rule_to_row(self._rule(row)))
                    conn.execute(q("reseal_rule"), {"name": row[0], "body": body})
                    count += 1
                return count
            finally:
                conn.execute(q("secure_delete_off"))

        return await self._db.write(run)

    async def get(self, name: str) -> NotificationRule | None:
        row = await self._db.read(
            lambda conn: conn.execute(q("get_rule"), {"name": name}).fetchone()
        )
        return None if row is None else self._rule(row)

    async def list_all(self) -> list[NotificationRule]:
        rows = await self._db.read(lambda conn: conn.execute(q("list_rules")).fetchall())
        return [self._rule(row) for row in rows]

    async def delete(self, name: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(q("delete_rule"), {"name": name}).rowcount > 0

        return await self._db.write(run)

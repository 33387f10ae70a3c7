"""Notification rules on the embedded SQLite database.

Implements :class:`store.notifications.protocol.NotificationStore`; the semantics live in the
protocol's docstrings. The SQL is in ``store/sql/sqlite/notifications.sql``.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3

from store.db.sqlite import SqliteDatabase
from store.notifications.models import NotificationRule, check_rule, rule_from_row, rule_to_row
from store.queue._sqlite_rows import from_us, now_us
from store.sqlfiles import queries

__all__ = ["SqliteNotificationStore"]


def q(name: str) -> str:
    return queries("sqlite", "notifications")[name]


def _rule(row: sqlite3.Row) -> NotificationRule:
    return rule_from_row(row[0], json.loads(row[1]), from_us(row[2]), from_us(row[3]))


class SqliteNotificationStore:
    """:class:`~store.notifications.protocol.NotificationStore` on SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def upsert(self, rule: NotificationRule) -> tuple[NotificationRule, bool]:
        now = now_us()

        def run(conn: sqlite3.Connection) -> tuple[NotificationRule, bool]:
            merged = rule
            if rule.secret is None:
                found = conn.execute(q("get_rule"), {"name": rule.name}).fetchone()
                if found is not None:
                    merged = dataclasses.replace(rule, secret=_rule(found).secret)
            checked = check_rule(merged)
            params = {"name": checked.name, "body": json.dumps(rule_to_row(checked)), "now": now}
            row = conn.execute(q("upsert_rule"), params).fetchone()
            return _rule(row), bool(row[4])

        return await self._db.write(run)

    async def get(self, name: str) -> NotificationRule | None:
        row = await self._db.read(
            lambda conn: conn.execute(q("get_rule"), {"name": name}).fetchone()
        )
        return None if row is None else _rule(row)

    async def list_all(self) -> list[NotificationRule]:
        rows = await self._db.read(lambda conn: conn.execute(q("list_rules")).fetchall())
        return [_rule(row) for row in rows]

    async def delete(self, name: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(q("delete_rule"), {"name": name}).rowcount > 0

        return await self._db.write(run)

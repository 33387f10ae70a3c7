"""Notification rules stored in PostgreSQL.

Implements :class:`store.notifications.protocol.NotificationStore`; the semantics live in the
protocol's docstrings. The SQL is in ``store/sql/postgres/notifications.sql``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from store.db.postgres import PostgresDatabase
from store.errors import StoreError
from store.notifications.models import NotificationRule, check_rule, rule_from_row, rule_to_row
from store.sqlfiles import queries

__all__ = ["PostgresNotificationStore"]


def _rule(row: Any) -> NotificationRule:
    return rule_from_row(row["name"], json.loads(row["body"]), row["created_at"], row["updated_at"])


class PostgresNotificationStore:
    """:class:`~store.notifications.protocol.NotificationStore` in PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._sql = queries("postgres", "notifications")

    async def upsert(self, rule: NotificationRule) -> tuple[NotificationRule, bool]:
        if rule.secret is None:
            found = await self.get(rule.name)
            if found is not None:
                rule = dataclasses.replace(rule, secret=found.secret)
        checked = check_rule(rule)
        row = await self._db.fetchrow(
            self._sql["upsert_rule"], checked.name, json.dumps(rule_to_row(checked))
        )
        if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
            raise StoreError("saving a notification rule returned no row")
        return _rule(row), bool(row["created"])

    async def get(self, name: str) -> NotificationRule | None:
        row = await self._db.fetchrow(self._sql["get_rule"], name)
        return None if row is None else _rule(row)

    async def list_all(self) -> list[NotificationRule]:
        return [_rule(row) for row in await self._db.fetch(self._sql["list_rules"])]

    async def delete(self, name: str) -> bool:
        return await self._db.fetchval(self._sql["delete_rule"], name) is not None

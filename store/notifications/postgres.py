"""Notification rules stored in PostgreSQL.

Implements :class:`store.notifications.protocol.NotificationStore`; the semantics live in the
protocol's docstrings. The SQL is in ``store/sql/postgres/notifications.sql``.
"""

from __future__ import annotations

import json
from typing import Any

from store.db.postgres import PostgresDatabase
from store.errors import StoreError
from store.notifications._sealing import keeping_secret, sealed
from store.notifications.models import (
    NotificationRule,
    check_rule,
    plain_secret,
    rule_from_row,
    rule_to_row,
)
from store.secrets.crypto import SecretBox
from store.sqlfiles import queries

__all__ = ["PostgresNotificationStore"]


def _stored(row: Any) -> NotificationRule:
    return rule_from_row(row["name"], json.loads(row["body"]), row["created_at"], row["updated_at"])


class PostgresNotificationStore:
    """:class:`~store.notifications.protocol.NotificationStore` in PostgreSQL, sealing rule
    secrets with ``box``."""

    def __init__(self, db: PostgresDatabase, box: SecretBox) -> None:
        self._db = db
        self._box = box
        self._sql = queries("postgres", "notifications")

    def _rule(self, row: Any) -> NotificationRule:
        return sealed(self._box, _stored(row))

    async def upsert(self, rule: NotificationRule) -> tuple[NotificationRule, bool]:
        found = None
        if rule.secret is None:
            row = await self._db.fetchrow(self._sql["get_rule"], rule.name)
            found = None if row is None else _stored(row)
        checked = check_rule(keeping_secret(rule, found))
        body = json.dumps(rule_to_row(sealed(self._box, checked)))
        saved = await self._db.fetchrow(self._sql["upsert_rule"], checked.name, body)
        if saved is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
            raise StoreError("saving a notification rule returned no row")
        return self._rule(saved), bool(saved["created"])

    async def seal_plain_secrets(self) -> int:
        count = 0
        for row in await self._db.fetch(self._sql["list_rules"]):
            if plain_secret(json.loads(row["body"])) is None:
                continue
            body = json.dumps(rule_to_row(self._rule(row)))
            # Only if the row is unchanged: a rule saved meanwhile is sealed already.
            if await self._db.fetchval(self._sql["reseal_rule"], row["name"], body, row["body"]):
                count += 1
        return count

    async def get(self, name: str) -> NotificationRule | None:
        row = await self._db.fetchrow(self._sql["get_rule"], name)
        return None if row is None else self._rule(row)

    async def list_all(self) -> list[NotificationRule]:
        return [self._rule(row) for row in await self._db.fetch(self._sql["list_rules"])]

    async def delete(self, name: str) -> bool:
        return await self._db.fetchval(self._sql["delete_rule"], name) is not None

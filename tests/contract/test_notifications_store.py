"""Notification rules in the store: saved whole, the secret sealed at rest with the secrets
key (bound to the rule's name) and kept when an edit leaves it out, secrets saved in clear by
an older version sealed at start, listed by name, deleted, refused with the field named — on
every backend."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from store.notifications.errors import InvalidRule
from store.notifications.models import (
    Channel,
    NotificationRule,
    RuleEvent,
    RuleScope,
    secret_context,
)
from store.secrets.crypto import SecretBox, load_or_create_key
from store.secrets.errors import SecretKeyError

SECRET = "s3cret-value"


@pytest.fixture
def box(tmp_path: Path) -> SecretBox:
    return SecretBox(load_or_create_key(tmp_path / "keys" / "secrets.key"))


@pytest.fixture
async def rules(backend: str, queue_location: Any, box: SecretBox) -> AsyncIterator[Any]:
    if backend == "sqlite":
        from store.db.sqlite import SqliteDatabase
        from store.notifications.sqlite import SqliteNotificationStore

        db: Any = await SqliteDatabase.open(queue_location)
        make: Any = SqliteNotificationStore
    else:
        from store.db.postgres import PostgresDatabase
        from store.notifications.postgres import PostgresNotificationStore

        db = await PostgresDatabase.open(queue_location)
        make = PostgresNotificationStore
    try:
        await db.migrate()
        yield make(db, box)
    finally:
        await db.close()


def _rule(**changes: Any) -> NotificationRule:
    rule = NotificationRule(
        name="ops",
        scope=RuleScope.JOB,
        target="nightly",
        events=(RuleEvent.FAILED, RuleEvent.RECOVERED),
        channel=Channel.WEBHOOK,
        url="https://hooks.example.test/longshore",
        secret=SECRET,
    )
    return dataclasses.replace(rule, **changes)


def opened(box: SecretBox, rule: NotificationRule) -> str:
    assert rule.sealed_secret is not None
    return box.open(secret_context(rule.name), rule.sealed_secret).decode()


async def raw_bodies(rules: Any) -> list[str]:
    """The stored bodies, as the database holds them."""
    db = rules._db
    if db.__class__.__name__.startswith("Sqlite"):
        sql = "SELECT body FROM notification_rules"
        rows = await db.read(lambda conn: conn.execute(sql).fetchall())
        return [row[0] for row in rows]
    return [row["body"] for row in await db.fetch("SELECT body FROM notification_rules")]


async def store_legacy_rule(rules: Any, name: str, secret: str) -> None:
    """A rule as an older version stored it: the secret in clear in the body."""
    body = json.dumps(
        {
            "scope": "global",
            "target": "",
            "events": ["failed"],
            "channel": "webhook",
            "url": "https://hooks.example.test/old",
            "secret": secret,
            "template": "t",
            "failuresInARow": 3,
            "warnAfterSeconds": 0,
            "timeoutSeconds": 10.0,
            "enabled": True,
        }
    )
    db = rules._db
    if db.__class__.__name__.startswith("Sqlite"):
        sql = "INSERT INTO notification_rules VALUES (?, ?, 1000000, 1000000)"
        await db.write(lambda conn: conn.execute(sql, (name, body)))
    else:
        await db.execute(
            "INSERT INTO notification_rules (name, body, created_at, updated_at) "
            "VALUES ($1, $2, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            name,
            body,
        )


async def test_a_rule_is_saved_whole_and_edited_in_place(rules: Any) -> None:
    saved, created = await rules.upsert(_rule())
    assert created
    assert saved.events == (RuleEvent.FAILED, RuleEvent.RECOVERED)
    again, created = await rules.upsert(_rule(events=(RuleEvent.TIMED_OUT,)))
    assert not created
    assert again.events == (RuleEvent.TIMED_OUT,)
    assert again.created_at == saved.created_at
    assert [rule.name for rule in await rules.list_all()] == ["ops"]


async def test_the_secret_is_sealed_at_rest_and_never_returned_in_clear(
    rules: Any, box: SecretBox, backend: str, queue_location: Any, tmp_path: Path
) -> None:
    saved, _ = await rules.upsert(_rule())
    for rule in (saved, await rules.get("ops"), *(await rules.list_all())):
        assert rule is not None
        assert rule.secret is None
        assert rule.public()["secretSet"] is True
        assert SECRET not in repr(rule) + str(rule.public())
        assert opened(box, rule) == SECRET
    [body] = await raw_bodies(rules)
    assert SECRET not in body
    assert "sealedSecret" in json.loads(body)
    # Bound to the rule's name: it opens for no other rule, nor as a job secret of that name.
    for context in ("other", "ops", secret_context("other")):
        with pytest.raises(SecretKeyError):
            box.open(context, saved.sealed_secret)
    # Another key does not open it.
    stranger = SecretBox(load_or_create_key(tmp_path / "other" / "secrets.key"))
    with pytest.raises(SecretKeyError):
        stranger.open(secret_context("ops"), saved.sealed_secret)
    if backend == "sqlite":
        await rules._db.close()
        folder = Path(queue_location).parent
        for name in os.listdir(folder):
            if (folder / name).is_file():
                assert SECRET.encode() not in (folder / name).read_bytes(), name


async def test_an_edit_without_a_secret_keeps_the_stored_one(rules: Any, box: SecretBox) -> None:
    first, _ = await rules.upsert(_rule())
    edited, _ = await rules.upsert(_rule(secret=None, url="https://other.example.test/"))
    assert edited.url == "https://other.example.test/"
    assert edited.sealed_secret == first.sealed_secret
    assert opened(box, edited) == SECRET
    assert "s3cret" not in str(edited.public())
    rotated, _ = await rules.upsert(_rule(secret="rotated-value"))
    assert opened(box, rotated) == "rotated-value"


async def test_secrets_stored_in_clear_before_are_sealed_once_without_changing_the_rule(
    rules: Any, box: SecretBox, backend: str, queue_location: Any
) -> None:
    await store_legacy_rule(rules, "old", "legacy-secret-4e1c")
    await store_legacy_rule(rules, "older", "legacy-secret-77aa")
    before = await rules.get("old")
    # Read before the upgrade, the rule already carries it sealed only.
    assert before.secret is None
    assert opened(box, before) == "legacy-secret-4e1c"
    assert await rules.seal_plain_secrets() == 2
    assert await rules.seal_plain_secrets() == 0
    bodies = await raw_bodies(rules)
    assert all("legacy-secret" not in body and "sealedSecret" in body for body in bodies)
    after = await rules.get("old")
    assert opened(box, after) == "legacy-secret-4e1c"
    assert after.updated_at == before.updated_at
    assert dataclasses.replace(after, sealed_secret=None) == dataclasses.replace(
        before, sealed_secret=None
    )
    assert opened(box, await rules.get("older")) == "legacy-secret-77aa"
    if backend == "sqlite":  # the rewritten rows' old bytes are zeroed, not left in the file
        await rules._db.close()
        folder = Path(queue_location).parent
        for name in os.listdir(folder):
            if (folder / name).is_file():
                assert b"legacy-secret" not in (folder / name).read_bytes(), name


async def test_an_edit_of_a_rule_stored_in_clear_seals_its_kept_secret(
    rules: Any, box: SecretBox
) -> None:
    await store_legacy_rule(rules, "old", "legacy-secret-4e1c")
    edited, created = await rules.upsert(
        _rule(name="old", scope=RuleScope.GLOBAL, target="", secret=None)
    )
    assert not created
    assert opened(box, edited) == "legacy-secret-4e1c"
    assert all("legacy-secret" not in body for body in await raw_bodies(rules))


async def test_a_bad_rule_is_refused_naming_the_field(rules: Any) -> None:
    with pytest.raises(InvalidRule) as caught:
        await rules.upsert(_rule(url="ftp://example.test/"))
    assert caught.value.field == "url"
    with pytest.raises(InvalidRule) as caught:
        await rules.upsert(_rule(secret=None))
    assert caught.value.field == "secret"
    assert await rules.list_all() == []


async def test_rules_are_listed_by_name_and_deleted(rules: Any) -> None:
    await rules.upsert(_rule(name="b"))
    await rules.upsert(_rule(name="a", scope=RuleScope.GLOBAL, target=""))
    assert [rule.name for rule in await rules.list_all()] == ["a", "b"]
    assert await rules.delete("a")
    assert not await rules.delete("a")
    assert await rules.get("a") is None
    assert (await rules.get("b")) is not None

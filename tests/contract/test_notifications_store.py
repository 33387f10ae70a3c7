"""Notification rules in the store: saved whole, the secret kept when an edit leaves it out,
listed by name, deleted, refused with the field named — on every backend."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from store.notifications.errors import InvalidRule
from store.notifications.models import Channel, NotificationRule, RuleEvent, RuleScope


@pytest.fixture
async def rules(backend: str, queue_location: Any) -> AsyncIterator[Any]:
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
        yield make(db)
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
        secret="s3cret-value",
    )
    return dataclasses.replace(rule, **changes)


async def test_a_rule_is_saved_whole_and_edited_in_place(rules: Any) -> None:
    saved, created = await rules.upsert(_rule())
    assert created
    assert saved.events == (RuleEvent.FAILED, RuleEvent.RECOVERED)
    assert saved.secret == "s3cret-value"
    again, created = await rules.upsert(_rule(events=(RuleEvent.TIMED_OUT,)))
    assert not created
    assert again.events == (RuleEvent.TIMED_OUT,)
    assert again.created_at == saved.created_at
    assert [rule.name for rule in await rules.list_all()] == ["ops"]


async def test_an_edit_without_a_secret_keeps_the_stored_one(rules: Any) -> None:
    await rules.upsert(_rule())
    edited, _ = await rules.upsert(_rule(secret=None, url="https://other.example.test/"))
    assert edited.secret == "s3cret-value"
    assert edited.url == "https://other.example.test/"
    assert "s3cret" not in str(edited.public())


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

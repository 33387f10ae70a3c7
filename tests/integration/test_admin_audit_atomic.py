"""No mutation without its audit entry: the entry is begun (checked, its intent journaled)
before the change, so a failing audit write leaves either both the change and its entry or
neither; an intent a crashed process left behind becomes an entry at the next start; a
refusal is audited whatever the length of its target."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from admin.app import create_app
from admin.config import AdminConfig, Role
from admin.services import AdminServices
from store.events import (
    AuditLog,
    AuditQuery,
    Event,
    EventStoreError,
    EventStoreOptions,
    FileEventStore,
    NewEvent,
)
from store.events.audit import UNKNOWN_OUTCOME
from store.events.audit_journal import AuditJournal

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

BASE = "http://admin.test/admin/v1"
OPERATOR = {"Authorization": "Bearer operator-secret-token"}


class FlakyStore:
    """An event store whose appends fail while ``failing`` is set (a full disk)."""

    def __init__(self, store: FileEventStore) -> None:
        self._store = store
        self.failing = False

    async def append(self, event: NewEvent) -> Event:
        if self.failing:
            raise EventStoreError("no space left on device")
        return await self._store.append(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass
class Harness:
    client: httpx.AsyncClient
    queue: Any
    store: FlakyStore
    audit: AuditLog
    journal: AuditJournal


@pytest.fixture
async def harness(queue: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    options = EventStoreOptions(directory=tmp_path / "events")
    async with await FileEventStore.open(options) as real:
        store = FlakyStore(real)
        journal = AuditJournal(tmp_path / "intents")
        journal.open()
        audit = AuditLog(store, journal=journal)  # type: ignore[arg-type]
        config = AdminConfig(
            tokens={"olga": "operator-secret-token"}, roles={"olga": Role.OPERATOR}
        )
        app = create_app(services=AdminServices(queue=queue, audit=audit), config=config)
        try:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                    yield Harness(client, queue, store, audit, journal)
        finally:
            journal.close()


async def test_an_audit_log_that_cannot_write_stops_the_mutation_before_it_changes_anything(
    harness: Harness,
) -> None:
    harness.journal.close()  # the intent cannot be made durable (as on a full disk)
    harness.store.failing = True
    response = await harness.client.post("/pause", headers=OPERATOR)
    assert response.status_code == 500, response.text
    assert not await harness.queue.is_global_paused()
    harness.store.failing = False
    assert await harness.audit.recent(AuditQuery()) == []


async def test_a_failed_final_audit_write_keeps_the_entry_and_writes_it_next(
    harness: Harness,
) -> None:
    harness.store.failing = True
    response = await harness.client.post("/pause", headers=OPERATOR)
    assert response.status_code == 200, response.text
    assert await harness.queue.is_global_paused()
    assert await harness.audit.recent(AuditQuery()) == []

    harness.store.failing = False
    response = await harness.client.post("/resume", headers=OPERATOR)
    assert response.status_code == 200, response.text
    entries = await harness.audit.recent(AuditQuery())
    assert [(e.action, e.status.value, e.actor) for e in reversed(entries)] == [
        ("dequeue.pause", "ok", "olga"),
        ("dequeue.resume", "ok", "olga"),
    ]


async def test_an_intent_a_crashed_process_left_becomes_an_entry_at_the_next_start(
    harness: Harness, tmp_path: Path
) -> None:
    harness.store.failing = True
    assert (await harness.client.post("/pause", headers=OPERATOR)).status_code == 200
    harness.journal.close()  # the process "dies": its entry was never written

    harness.store.failing = False
    restarted = AuditLog(harness.store, journal=AuditJournal(tmp_path / "intents"))  # type: ignore[arg-type]
    assert await restarted.recover() == 1
    [entry] = await restarted.recent(AuditQuery())
    assert (entry.action, entry.actor, entry.target) == ("dequeue.pause", "olga", "*")
    assert (entry.status.value, entry.detail) == ("error", UNKNOWN_OUTCOME)
    assert list((tmp_path / "intents").iterdir()) == []
    assert await restarted.recover() == 0


async def test_a_refusal_with_a_very_long_target_is_audited_with_its_hash(
    harness: Harness,
) -> None:
    name = "q" * 2000
    response = await harness.client.post(
        f"/queues/{name}/weight", json={"weight": -5}, headers=OPERATOR
    )
    assert 400 <= response.status_code < 500, response.text
    [entry] = await harness.audit.recent(AuditQuery())
    assert entry.status.value == "error"
    assert len(entry.target) <= 512
    assert entry.target.startswith("qqqq")
    assert entry.target.endswith("sha256:" + hashlib.sha256(name.encode()).hexdigest())
    assert json.dumps(entry.target)

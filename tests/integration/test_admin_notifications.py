"""The notification rule routes over a whole runtime (SQLite and PostgreSQL): saved,
replaced, listed, shown and deleted by an admin; bad input is a 400 naming the field;
other roles are refused; every change and refusal is audited; no response holds the secret;
a secret an older version stored in clear is sealed when the service starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from store.db.postgres import PostgresDatabase
from store.db.sqlite import SqliteDatabase
from store.notifications.models import secret_context
from tests.integration.admin_harness import ADMIN, APPROVAL, OPERATOR, VIEWER, full_admin

SECRET = "route-secret-93ab"
RULE = {
    "scope": "job",
    "target": "nightly",
    "events": ["failed", "recovered"],
    "channel": "webhook",
    "url": "https://hooks.example.test/longshore",
    "secret": SECRET,
}


async def test_rules_are_saved_listed_replaced_and_deleted_without_showing_the_secret(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        client = admin.client
        created = await client.put("/notifications/rules/ops", json=RULE, headers=ADMIN)
        assert created.status_code == 201, created.text
        rule = created.json()["rule"]
        assert (rule["name"], rule["secretSet"], rule["events"]) == (
            "ops",
            True,
            ["failed", "recovered"],
        )
        assert "secret" not in rule
        edit = {key: value for key, value in RULE.items() if key != "secret"}
        replaced = await client.put(
            "/notifications/rules/ops", json={**edit, "events": ["timed_out"]}, headers=ADMIN
        )
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["rule"]["secretSet"] is True
        listed = await client.get("/notifications/rules", headers=VIEWER)
        assert [r["events"] for r in listed.json()["rules"]] == [["timed_out"]]
        shown = await client.get("/notifications/rules/ops", headers=VIEWER)
        assert shown.json()["rule"]["url"] == RULE["url"]
        for response in (created, replaced, listed, shown):
            assert SECRET not in response.text
        assert (await client.delete("/notifications/rules/ops", headers=ADMIN)).status_code == 200
        missing = await client.get("/notifications/rules/ops", headers=VIEWER)
        assert missing.status_code == 404
        gone = await client.delete("/notifications/rules/ops", headers=ADMIN)
        assert gone.status_code == 404

        entries = await admin.audit_entries(limit=50)
        actions = [(e.action, e.status.value) for e in entries]
        assert actions.count(("notification.save", "ok")) == 2
        assert ("notification.delete", "ok") in actions
        assert ("notification.delete", "error") in actions
        assert SECRET not in repr(entries)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "ftp://hooks.example.test/"}, "url"),
        ({"url": "https://user:pw@hooks.example.test/"}, "url"),
        ({"events": ["exploded"]}, "events"),
        ({"events": []}, "events"),
        ({"scope": "galaxy"}, "scope"),
        ({"target": ""}, "target"),
        ({"secret": None}, "secret"),
        ({"events": ["slow"]}, "warnAfterSeconds"),
        ({"failuresInARow": 0}, "failuresInARow"),
        ({"timeoutSeconds": 600}, "timeoutSeconds"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_a_bad_rule_is_a_400_naming_the_field_and_audited(
    backend: str, queue_location: Any, tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        body = {**RULE, **change}
        response = await admin.client.put("/notifications/rules/bad", json=body, headers=ADMIN)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert field in error["message"]
        assert SECRET not in response.text
        assert (await admin.client.get("/notifications/rules", headers=VIEWER)).json() == {
            "rules": []
        }
        [entry] = await admin.audit_entries(limit=10)
        assert (entry.action, entry.status.value) == ("notification.save", "error")


async def test_only_an_admin_changes_rules_and_approval_is_asked_when_required(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(
        backend, queue_location, tmp_path, require_approval=True, approval_token=APPROVAL
    ) as admin:
        client = admin.client
        for who in (VIEWER, OPERATOR):
            refused = await client.put("/notifications/rules/ops", json=RULE, headers=who)
            assert refused.status_code == 403, refused.text
        unapproved = await client.put("/notifications/rules/ops", json=RULE, headers=ADMIN)
        assert unapproved.status_code == 403
        assert unapproved.json()["error"]["code"] == "approval_required"
        approved = await client.put(
            "/notifications/rules/ops",
            json=RULE,
            headers={**ADMIN, "X-Admin-Approval": APPROVAL},
        )
        assert approved.status_code == 201, approved.text
        entries = await admin.audit_entries(limit=10)
        assert [e.status.value for e in entries].count("error") == 3


async def test_a_secret_stored_in_clear_by_an_older_version_is_sealed_when_the_service_starts(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    legacy = {
        "scope": "global",
        "target": "",
        "events": ["failed"],
        "channel": "webhook",
        "url": "https://hooks.example.test/old",
        "secret": "legacy-clear-secret-0c4d",
    }
    if backend == "sqlite":
        db: Any = await SqliteDatabase.open(tmp_path / "data" / "longshore.db")
        await db.migrate()
        sql = "INSERT INTO notification_rules VALUES ('old', ?, 1, 1)"
        await db.write(lambda conn: conn.execute(sql, (json.dumps(legacy),)))
        read = "SELECT body FROM notification_rules"
    else:
        db = await PostgresDatabase.open(str(queue_location))
        await db.migrate()
        await db.execute(
            "INSERT INTO notification_rules (name, body) VALUES ('old', $1)", json.dumps(legacy)
        )
        read = "SELECT body FROM notification_rules"
    await db.close()

    async with full_admin(backend, queue_location, tmp_path) as admin:
        shown = await admin.client.get("/notifications/rules/old", headers=VIEWER)
        assert shown.json()["rule"]["secretSet"] is True
        assert "legacy-clear-secret" not in shown.text
        rule = await admin.runtime.stores.notifications.get("old")
        assert rule is not None
        assert rule.sealed_secret is not None
        box = admin.runtime.stores.secrets_box
        assert box.open(secret_context("old"), rule.sealed_secret) == b"legacy-clear-secret-0c4d"

    db = await (
        SqliteDatabase.open(tmp_path / "data" / "longshore.db")
        if backend == "sqlite"
        else PostgresDatabase.open(str(queue_location))
    )
    try:
        if backend == "sqlite":
            [body] = [row[0] for row in await db.read(lambda conn: conn.execute(read).fetchall())]
        else:
            body = await db.fetchval(read)
    finally:
        await db.close()
    assert "legacy-clear-secret" not in body
    assert "sealedSecret" in json.loads(body)

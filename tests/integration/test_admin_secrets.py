"""The ``secrets`` routes of the admin API over a whole runtime (SQLite and PostgreSQL): set,
list and delete by role; values never answered; audit entries that name the secret and keep
no trace of the value; grants checked when a job is saved; a seed 003 client's save of a job
keeps the job's secrets and parameters."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.integration.admin_harness import ADMIN, APPROVAL, OPERATOR, VIEWER, full_admin
from tests.integration.test_admin_jobs import assert_envelope, git_job, settings

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)

VALUE = "correct-horse-battery-" + "9" * 12
EMPTY_HASH = hashlib.sha256(b"").hexdigest()

SEED_FIELDS = {
    "description": "",
    "repo": "https://git.example.com/team/jobs.git",
    "tag": "v2",
    "tarballUrl": "",
    "tarballPath": "",
    "tarballSha256": "",
    "path": "",
    "dockerfile": "",
    "command": [],
    "env": [],
    "queue": "",
    "retries": 0,
    "timeoutSeconds": 0,
}


async def test_secrets_are_set_listed_and_deleted_by_role_and_never_shown(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(
        backend,
        queue_location,
        tmp_path,
        settings=settings(tmp_path),
        require_approval=True,
        approval_token=APPROVAL,
    ) as admin:
        client = admin.client
        for who in (VIEWER, OPERATOR):
            refused = await client.put("/secrets/db", json={"value": VALUE}, headers=who)
            assert_envelope(refused, 403, "forbidden")
        created = await client.put("/secrets/db", json={"value": VALUE}, headers=ADMIN)
        assert created.status_code == 201, created.text
        assert created.json()["secret"]["name"] == "db"
        assert created.json()["secret"]["sizeBytes"] == len(VALUE)
        raw = bytes(range(256))
        binary = {"valueBase64": base64.b64encode(raw).decode()}
        assert (await client.put("/secrets/blob", json=binary, headers=ADMIN)).status_code == 201
        replaced = await client.put("/secrets/db", json={"value": VALUE + "!"}, headers=ADMIN)
        assert replaced.status_code == 200

        for bad, message in (
            ({"value": ""}, "empty"),
            ({}, "exactly one of value and valueBase64"),
            ({"value": "a", "valueBase64": "YQ=="}, "exactly one"),
            ({"valueBase64": "***"}, "valueBase64: is not base64"),
        ):
            answer = await client.put("/secrets/other", json=bad, headers=ADMIN)
            assert message in assert_envelope(answer, 400, "invalid_request")
        bad_name = await client.put("/secrets/bad%20name", json={"value": "v"}, headers=ADMIN)
        assert "secret name" in assert_envelope(bad_name, 400, "invalid_request")

        listed = await client.get("/secrets", headers=VIEWER)
        assert [s["name"] for s in listed.json()["secrets"]] == ["blob", "db"]
        assert VALUE not in listed.text

        entries = await admin.audit_entries(limit=100)
        sets = [e for e in entries if e.action == "secret.set"]
        assert {e.target for e in sets} >= {"db", "blob", "other"}
        assert all(e.payload_hash == EMPTY_HASH for e in sets)
        assert not any(VALUE in repr(e) for e in entries)

        # A job granted a secret that does not exist is refused, naming it.
        job = git_job(
            "uses-db", secrets=[{"name": "db", "file": "db"}, {"name": "gone", "env": "G"}]
        )
        refused_job = await client.post("/jobs", json=job, headers=ADMIN)
        message = assert_envelope(refused_job, 400, "invalid_request")
        assert message.startswith("secrets[1].name:")
        assert "gone" in message
        job["secrets"] = [{"name": "db", "file": "db"}]
        job["params"] = [{"name": "n", "type": "integer", "default": 1}]
        assert (await client.post("/jobs", json=job, headers=ADMIN)).status_code == 201

        # A seed 003 client saves the job with its 15 fields: secrets and params are kept.
        seed = {"name": "uses-db", "source": "git_tag", **SEED_FIELDS}
        assert (await client.post("/jobs", json=seed, headers=ADMIN)).status_code == 200
        kept = (await client.get("/jobs/uses-db", headers=VIEWER)).json()["job"]
        assert kept["secrets"] == [{"name": "db", "env": None, "file": "db"}]
        assert kept["params"][0]["name"] == "n"
        assert kept["tag"] == "v2"

        # A granted secret cannot be deleted; then it can, once (risky: approval needed).
        no_approval = await client.delete("/secrets/db", headers=ADMIN)
        assert_envelope(no_approval, 403, "approval_required")
        approved = {**ADMIN, "X-Admin-Approval": APPROVAL}
        conflict = await client.delete("/secrets/db", headers=approved)
        assert "uses-db" in assert_envelope(conflict, 409, "conflict")
        revoke = {**git_job("uses-db"), "secrets": []}
        assert (await client.post("/jobs", json=revoke, headers=ADMIN)).status_code == 200
        gone = await client.delete("/secrets/db", headers=approved)
        assert gone.json() == {"deleted": True, "name": "db"}
        again = await client.delete("/secrets/db", headers=approved)
        assert_envelope(again, 404, "not_found")
        deletes = [e for e in await admin.audit_entries(limit=100) if e.action == "secret.delete"]
        assert {e.target for e in deletes} == {"db"}
        assert all(e.payload_hash == EMPTY_HASH for e in deletes)


async def test_a_refused_secret_body_never_repeats_a_value_sent_as_a_field_name(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    """A value pasted where a field name goes (``{"<value>": ...}``, also with a NUL) is not
    named by the 400 nor by the audit entry of the refusal (which every viewer reads)."""
    async with full_admin(backend, queue_location, tmp_path) as admin:
        bodies = [
            f'{{"{VALUE}": "{VALUE}"}}',
            f'{{"value": "x", "{VALUE}": 1}}',
            f'{{"{VALUE}\\u0000": 1}}',
        ]
        for body in bodies:
            refused = await admin.client.put(
                "/secrets/api-key",
                headers={**ADMIN, "content-type": "application/json"},
                content=body.encode(),
            )
            assert refused.status_code == 400, refused.text
            assert VALUE not in refused.text
            assert "body" in refused.json()["error"]["message"]
        # The fields the body declares are still named.
        named = await admin.client.put("/secrets/api-key", headers=ADMIN, json={"value": 3})
        assert named.json()["error"]["message"].startswith("value: ")
        entries = await admin.audit_entries(action="secret.set")
        assert len(entries) == len(bodies) + 1
        assert all(VALUE not in repr(entry) for entry in entries)

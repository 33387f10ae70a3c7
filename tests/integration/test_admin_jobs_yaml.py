"""``POST /jobs`` with a YAML body (``Content-Type: application/yaml``) over a whole runtime
(SQLite and PostgreSQL): the same definition as JSON, the same validation and audit; a YAML
error is a 400 naming its line and column; what JSON cannot hold (aliases, non-string keys,
several documents) is refused; the body is size-capped like any other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from store.events import payload_hash
from tests.integration.admin_harness import ADMIN, VIEWER, full_admin
from tests.integration.test_admin_jobs import assert_envelope, git_job, settings

YAML = {"content-type": "application/yaml"}
DEFINITION = """\
# the nightly report
name: nightly-report
source: git_tag
repo: https://git.example.com/team/jobs.git
tag: "v1.2.3"
description: the nightly report
command: [python, -m, report]
env:
  - MODE=full
queue: reports
retries: 2
timeoutSeconds: 900
resources: {memoryMb: 256, cpus: 0.5, pidsLimit: 64}
"""


async def test_a_yaml_definition_is_saved_exactly_as_its_json_twin_and_audited(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path, settings=settings(tmp_path)) as admin:
        client = admin.client
        response = await client.post("/jobs", content=DEFINITION, headers={**ADMIN, **YAML})
        assert response.status_code == 201, response.text
        from_yaml = response.json()["job"]
        twin = git_job(
            "twin",
            description="the nightly report",
            command=["python", "-m", "report"],
            env=["MODE=full"],
            queue="reports",
            retries=2,
            timeoutSeconds=900,
            resources={"memoryMb": 256, "cpus": 0.5, "pidsLimit": 64},
        )
        from_json = (await client.post("/jobs", json=twin, headers=ADMIN)).json()["job"]
        volatile = {"name", "createdAt", "updatedAt", "createdAtMs", "updatedAtMs", "revision"}
        assert {k: v for k, v in from_yaml.items() if k not in volatile} == {
            k: v for k, v in from_json.items() if k not in volatile
        }
        # Saving again replaces it (200); a YAML timestamp-like value stays text.
        again = DEFINITION.replace('tag: "v1.2.3"', "tag: 2024-01-31")
        response = await client.post(
            "/jobs", content=again, headers={**ADMIN, "content-type": "application/x-yaml"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["job"]["tag"] == "2024-01-31"
        entries = await admin.audit_entries(action="job.upsert", target="nightly-report")
        assert [(e.status.value, e.actor) for e in entries] == [("ok", "alice"), ("ok", "alice")]
        assert entries[-1].payload_hash == payload_hash(DEFINITION.encode())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: a\nsource: [git_tag\n", "yaml: line 3, column 1: "),
        ("name: a\n  source: git_tag\n", "yaml: line 2, column 9: mapping values are not"),
        ("name: a\n---\nname: b\n", "yaml: line 2, column 1: but found another document"),
        ("base: &b x\nname: *b\n", "yaml: line 2, column 7: aliases (*name) are not accepted"),
        ("name: a\n1: x\n", "yaml: the key 1 is not a string"),
        ("name: a\ncommand: [.inf]\n", "command[0]: must be a finite number"),
        ("name: !!binary aGk=\n", "name: a YAML bytes is not accepted here"),
        ('name: "bad\\0name"\nsource: git_tag\n', "name: must not contain NUL"),
        ("name: a\nsource: git_tag\nretries: many\n", "retries: Input should be a valid int"),
        ("- name: a\n", "body: must be a JSON object"),
    ],
)
async def test_a_bad_yaml_definition_is_400_naming_where_audited_and_nothing_is_saved(
    backend: str, queue_location: Any, tmp_path: Path, text: str, message: str
) -> None:
    async with full_admin(backend, queue_location, tmp_path, settings=settings(tmp_path)) as admin:
        response = await admin.client.post("/jobs", content=text, headers={**ADMIN, **YAML})
        said = assert_envelope(response, 400, "invalid_request")
        assert said.startswith(message), said
        assert (await admin.runtime.stores.jobs.list_jobs(limit=10, offset=0)).total == 0
        [entry] = await admin.audit_entries(action="job.upsert")
        assert (entry.status.value, entry.actor) == ("error", "alice")
        assert entry.detail.startswith("400 invalid_request")


async def test_a_yaml_definition_needs_the_admin_role_and_credentials_and_is_size_capped(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(
        backend, queue_location, tmp_path, settings=settings(tmp_path), max_body_bytes=4096
    ) as admin:
        client = admin.client
        response = await client.post("/jobs", content=DEFINITION, headers={**VIEWER, **YAML})
        assert_envelope(response, 403, "forbidden")
        [entry] = await admin.audit_entries(action="job.upsert")
        assert (entry.actor, entry.target, entry.status.value) == ("vic", "nightly-report", "error")
        assert_envelope(
            await client.post("/jobs", content="{", headers=YAML), 401, "unauthenticated"
        )
        big = DEFINITION + "description: " + "x" * 5000 + "\n"
        response = await client.post("/jobs", content=big, headers={**ADMIN, **YAML})
        assert_envelope(response, 413, "body_too_large")
        assert await admin.runtime.stores.jobs.get("nightly-report") is None

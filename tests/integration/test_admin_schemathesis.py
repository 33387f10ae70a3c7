"""Schemathesis over the whole admin API (SQLite and PostgreSQL): every operation of
``/admin/v1/openapi.json`` is fuzzed with valid and invalid input, as the admin, and no
response may be a 5xx or break the documented schema (status, content type, body).

The harness's app lives on the test's event loop (its stores hold connections of that
loop), so schemathesis' own ASGI transport (which runs the app on a loop of its own) is
not used: hypothesis generates the cases in a worker thread and each request is sent by
the harness's ``httpx`` client on the test's loop; schemathesis then validates the
``httpx`` response. Generation is derandomized, so a run is reproducible.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from store.events import EventType, NewEvent
from store.jobs.models import NewRun, RunArtifact, RunStatus
from store.queue.models import Failure, NewTask
from tests.integration.admin_harness import ADMIN, FullAdmin, full_admin

pytestmark = pytest.mark.slow

REPO = "https://git.example.com/team/jobs.git"

MAX_EXAMPLES = 40
"""Cases per operation and generation mode."""

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]

NEVER_ENDING = {("GET", "/admin/v1/events")}
"""Server-sent event streams that only end when the client goes away: not fuzzed (a
request would never complete). The run output's ``?follow=true`` streams until the run
ends: it is only sent in the seeded pass, whose run has finished (see :func:`_never_follow`)."""


def _never_follow(case: Case[Any]) -> Case[Any]:
    """The case without ``follow`` (a following output request streams until the run
    ends, and a random run id may name a queued run of the seeded ones)."""
    if isinstance(case.query, dict) and "follow" in case.query:
        case.query = {k: v for k, v in case.query.items() if k != "follow"}
    return case


def _request(case: Case[Any]) -> dict[str, Any]:
    """The ``httpx`` request of a case (schemathesis serializes for ``requests``)."""
    kwargs = case.as_transport_kwargs(base_url="http://admin.test")
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": {**kwargs.get("headers", {}), **ADMIN},
        "params": kwargs.get("params"),
        "cookies": kwargs.get("cookies") or None,
        "timeout": 30,
    }
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    data = kwargs.get("data")
    if isinstance(data, str | bytes):
        request["content"] = data
    elif data is not None:
        request["data"] = data
    if kwargs.get("files"):
        request["files"] = kwargs["files"]
    return request


def _run_pass(
    strategy: Any,
    client: httpx.AsyncClient,
    loop: asyncio.AbstractEventLoop,
    seen: set[int],
    *,
    follow: bool,
) -> None:
    """Send the generated cases of ``strategy`` and validate each response; raises what
    hypothesis found."""

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Case[Any]) -> None:
        if not follow:
            case = _never_follow(case)
        request = _request(case)
        response = asyncio.run_coroutine_threadsafe(client.request(**request), loop).result(
            timeout=60
        )
        seen.add(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=request["headers"])

    run()


def _fuzz(
    operation: Any,
    client: httpx.AsyncClient,
    loop: asyncio.AbstractEventLoop,
    seeded: dict[str, str] | None,
    statuses: dict[str, set[int]],
) -> list[str]:
    """Run the checks over generated cases of one operation (in a worker thread): valid
    input, invalid input and, when the path names a resource, valid input on the seeded
    resource (random names only ever find nothing); the failures found, one message each
    (hypothesis stops at the first failing case of each pass)."""
    passes: list[tuple[str, GenerationMode, dict[str, Any] | None]] = [
        ("positive", GenerationMode.POSITIVE, None),
        ("negative", GenerationMode.NEGATIVE, None),
    ]
    if seeded is not None:
        passes.append(("seeded", GenerationMode.POSITIVE, seeded))
    failures: list[str] = []
    for label, mode, path_parameters in passes:
        strategy = operation.as_strategy(
            generation_mode=mode, headers=dict(ADMIN), path_parameters=path_parameters
        )
        seen = statuses.setdefault(f"{operation.label} [{label}]", set())
        try:
            _run_pass(strategy, client, loop, seen, follow=label == "seeded")
        except hypothesis.errors.Unsatisfiable:
            # No invalid input exists for this operation (e.g. free-form string parameters
            # and no body): nothing to fuzz in negative mode.
            assert mode is GenerationMode.NEGATIVE, operation.label
        except (Exception, BaseExceptionGroup) as exc:  # checks failed: report with the others
            failures.append(f"{operation.label} [{label}]: {exc}")
    return failures


async def _seed(admin: FullAdmin) -> dict[str, dict[str, str]]:
    """Dead tasks, a job, a finished run with output, an artifact and a source, a queued
    run and a schedule; the path parameters naming them, by path."""
    queue = admin.runtime.stores.queue
    ids = []
    for n in range(3):
        result = await queue.enqueue(NewTask(handler="send_email", queue="mail", payload={"n": n}))
        ids.append(result.task.id)
    assert len(await queue.claim("w1", 3, lease=timedelta(seconds=30), queues=["mail"])) == 3
    await queue.fail("w1", [Failure(task_id=i, error="oops", retry_at=None) for i in ids])

    job = {"name": "nightly", "source": "git_tag", "repo": REPO, "tag": "v1.2.3"}
    response = await admin.client.post("/jobs", json=job, headers=ADMIN)
    assert response.status_code == 201, response.text

    runs = admin.runtime.stores.runs
    run = await runs.create(NewRun(job="nightly"))
    await admin.runtime.events.append(
        NewEvent.run(
            EventType.RUN_OUTPUT_EMITTED,
            job=run.job,
            run_id=run.run_id,
            seq=0,
            offset=0,
            bytes=6,
            text="hello\n",
        )
    )
    output = admin.runtime.artifacts.put_chunks([b"hello\n"])
    artifact = admin.runtime.artifacts.put_chunks([bytes(range(256)) * 4])
    source = admin.runtime.artifacts.put_chunks([b"\x1f\x8b" + bytes(510)])
    await runs.transition(run.run_id, RunStatus.RUNNING)
    await runs.transition(
        run.run_id,
        RunStatus.SUCCEEDED,
        exit_code=0,
        output_sha256=output.sha256,
        output_bytes=output.size,
        source_sha256=source.sha256,
        artifacts=[
            RunArtifact(name="report.bin", size_bytes=artifact.size, sha256=artifact.sha256)
        ],
    )
    queued = await runs.create(NewRun(job="nightly"))

    schedule = {"name": "nightly", "spec": "@hourly"}
    response = await admin.client.post("/schedules", json=schedule, headers=ADMIN)
    assert response.status_code == 201, response.text

    run_id = {"run_id": run.run_id}
    return {
        "/admin/v1/queues/{name}": {"name": "mail"},
        "/admin/v1/queues/{name}/weight": {"name": "mail"},
        "/admin/v1/queues/{name}/pause": {"name": "mail"},
        "/admin/v1/dlq/{task_id}": {"task_id": str(ids[0])},
        "/admin/v1/jobs/{name}": {"name": "nightly"},
        "/admin/v1/jobs/{name}/run": {"name": "nightly"},
        "/admin/v1/jobs/{name}/artifact/meta": {"name": "nightly"},
        "/admin/v1/jobs/{name}/artifact": {"name": "nightly"},
        "/admin/v1/runs/{run_id}": run_id,
        "/admin/v1/runs/{run_id}/cancel": {"run_id": queued.run_id},
        "/admin/v1/schedules/{name}": {"name": "nightly"},
        "/admin/v1/schedules/{name}/pause": {"name": "nightly"},
        "/admin/v1/schedules/{name}/run": {"name": "nightly"},
        "/admin/v1/runs/{run_id}/output": run_id,
        "/admin/v1/runs/{run_id}/artifacts": run_id,
        "/admin/v1/runs/{run_id}/artifacts/{name}": {**run_id, "name": "report.bin"},
    }


def _order(operation: Any) -> tuple[int, str]:
    """Reads first, deletions last: the seeded resources outlive the reads of them."""
    method = operation.method.upper()
    return ({"GET": 0, "DELETE": 2}.get(method, 1), operation.label)


async def test_every_operation_conforms(backend: str, queue_location: Any, tmp_path: Path) -> None:
    tarballs = tmp_path / "tarballs"
    tarballs.mkdir()
    settings = {
        "job_tarball_dir": tarballs,
        "job_repo_allowlist": ("https://git.example.com/team/",),
    }
    async with full_admin(backend, queue_location, tmp_path, settings=settings) as admin:
        document = await admin.client.get("/openapi.json", headers=ADMIN)
        assert document.status_code == 200
        schema = schemathesis.openapi.from_dict(document.json())
        seeds = await _seed(admin)
        loop = asyncio.get_running_loop()
        fuzzed: list[str] = []
        statuses: dict[str, set[int]] = {}
        failures: list[str] = []
        loaded = list(schema.get_all_operations())
        assert all(isinstance(result, Ok) for result in loaded), loaded
        operations = sorted((r.ok() for r in loaded if isinstance(r, Ok)), key=_order)
        for operation in operations:
            key = (operation.method.upper(), operation.path)
            if key in NEVER_ENDING:
                continue
            seeded = seeds.get(operation.path)
            found = await asyncio.to_thread(_fuzz, operation, admin.client, loop, seeded, statuses)
            fuzzed.append(operation.label)
            failures.extend(found)
        assert len(fuzzed) >= 40, fuzzed
        # The seeded reads reached their resource (not only 404s).
        missed = [
            label
            for label, seen in statuses.items()
            if label.startswith("GET") and label.endswith("[seeded]")
            if not any(200 <= status < 300 for status in seen)
        ]
        assert not missed, statuses
        assert not failures, "\n\n".join(failures)


# --- what the fuzzing found, pinned ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "request_kwargs", "field"),
    [
        # Offsets beyond BIGINT overflowed the store's parameter (500).
        ("GET", "/dlq", {"params": {"offset": 2**64}}, "offset"),
        ("GET", "/tasks", {"params": {"offset": 2**64}}, "offset"),
        ("GET", "/jobs", {"params": {"offset": 2**64}}, "offset"),
        ("GET", "/runs", {"params": {"offset": 2**64}}, "offset"),
        ("GET", "/schedules", {"params": {"offset": 2**64}}, "offset"),
        ("GET", "/dlq/18446744073709551616", {}, "task_id"),
        ("POST", "/dlq/purge", {"json": {"olderThanSeconds": 10**30}}, "olderThanSeconds"),
        # NUL in a query parameter or a JSON string failed on PostgreSQL's text (500).
        ("GET", "/tasks", {"params": {"handler": "a\x00b"}}, "handler"),
        ("GET", "/dlq", {"params": {"query": "\x00"}}, "query"),
        ("POST", "/dlq/replay", {"json": {"queue": "mail\x00"}}, "queue"),
        # An unpaired surrogate in a JSON string cannot be encoded for the store (500).
        ("POST", "/dlq/replay", {"content": b'{"handler": "\\ud800"}'}, "handler"),
        ("POST", "/jobs", {"content": b'{"name": "a\\udfff", "source": "git_tag"}'}, "name"),
        # Ids only Python's int() reads as numbers.
        ("POST", "/dlq/replay/ids", {"json": {"ids": [" 1"]}}, "ids[0]"),
        ("POST", "/dlq/replay/ids", {"json": {"ids": ["1", "\u0661"]}}, "ids[1]"),
    ],
)
async def test_input_no_store_can_take_is_a_400_naming_the_field(
    backend: str,
    queue_location: Any,
    tmp_path: Path,
    method: str,
    path: str,
    request_kwargs: dict[str, Any],
    field: str,
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        headers = {**ADMIN, "Content-Type": "application/json"}
        response = await admin.client.request(method, path, headers=headers, **request_kwargs)
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"]["code"] == "invalid_request"
        assert body["error"]["message"].startswith(f"{field}:"), body


async def test_a_refused_body_with_a_nul_is_audited_with_an_escaped_target(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        body = b'{"name": "bad\\u0000\\ud800", "source": "git_tag"}'
        headers = {**ADMIN, "Content-Type": "application/json"}
        response = await admin.client.post("/jobs", content=body, headers=headers)
        assert response.status_code == 400, response.text
        [entry] = await admin.audit_entries(action="job.upsert")
        assert (entry.target, entry.status.value) == ("bad\\u0000\\ud800", "error")
        assert entry.detail.startswith("400 invalid_request: name:")


async def test_a_path_parameter_with_a_nul_names_nothing(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        for method, path in (
            ("GET", "/jobs/a%00b"),
            ("GET", "/queues/a%00b"),
            ("DELETE", "/jobs/a%00b"),
            ("GET", "/runs/a%00b/artifacts/x"),
        ):
            response = await admin.client.request(method, path, headers=ADMIN)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "not_found"
        [entry] = await admin.audit_entries(action="job.delete")
        assert (entry.target, entry.status.value) == ("a\x00b", "error")

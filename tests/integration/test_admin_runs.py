"""The ``runs`` routes of the admin API over a whole runtime (SQLite and PostgreSQL): list
and filter, detail, output (plain and followed over SSE, resumable), cancel (roles, approval,
audit), artifacts (list, download, byte ranges); and, on real Docker, a job followed live
while it runs."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import tarfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from admin.app import create_app
from admin.config import AdminConfig
from admin.routes import runs as runs_routes
from admin.services import AdminServices
from admin.streams import end_event_streams
from service.runtime import build_registry
from service.worker import Worker, WorkerOptions
from store.events import (
    AuditLog,
    Event,
    EventStoreOptions,
    EventType,
    FileEventStore,
    NewEvent,
    Stream,
)
from store.jobs.models import (
    JobDefinition,
    NewRun,
    Run,
    RunArtifact,
    RunStatus,
    RunTrigger,
)
from store.queue.models import TaskState
from tests.integration.admin_harness import (
    ADMIN,
    APPROVAL,
    BASE,
    OPERATOR,
    ROLES,
    TOKENS,
    VIEWER,
    FullAdmin,
    full_admin,
)
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image

SHA = "ab" * 32


@pytest.fixture
async def admin(backend: str, queue_location: Any, tmp_path: Path) -> AsyncIterator[FullAdmin]:
    tarballs = tmp_path / "tarballs"
    tarballs.mkdir()
    async with full_admin(
        backend, queue_location, tmp_path, settings={"job_tarball_dir": tarballs}
    ) as value:
        yield value


def assert_envelope(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"requestId", "error"}
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    return message


async def new_run(admin: FullAdmin, job: str = "alpha", **fields: Any) -> Run:
    run: Run = await admin.runtime.stores.runs.create(NewRun(job=job, **fields))
    return run


async def move(admin: FullAdmin, run: Run, *statuses: RunStatus, **fields: Any) -> Run:
    """Move ``run`` through ``statuses``; ``fields`` go with the last one."""
    for status in statuses[:-1]:
        run = await admin.runtime.stores.runs.transition(run.run_id, status)
    moved: Run = await admin.runtime.stores.runs.transition(run.run_id, statuses[-1], **fields)
    return moved


async def output_events(admin: FullAdmin, run: Run, *texts: str) -> list[Event]:
    return [
        await admin.runtime.events.append(
            NewEvent.run(
                EventType.RUN_OUTPUT_EMITTED,
                job=run.job,
                run_id=run.run_id,
                seq=seq,
                offset=0,
                bytes=len(text.encode()),
                text=text,
            )
        )
        for seq, text in enumerate(texts)
    ]


async def status_event(admin: FullAdmin, run: Run, kind: EventType) -> Event:
    event = NewEvent(
        stream=Stream.RUNS,
        key=run.job,
        type=kind,
        run_id=run.run_id,
        data={
            "runId": run.run_id,
            "job": run.job,
            "status": run.status.value,
            "exitCode": run.exit_code,
            "error": run.error,
        },
    )
    return await admin.runtime.events.append(event)


@dataclass(frozen=True)
class Sse:
    event: str | None
    data: str | None
    id: str | None
    retry: int | None

    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


def parse_sse(text: str) -> list[Sse]:
    """Every block of a ``text/event-stream`` body (keep-alive comments left out)."""
    found = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        if fields:
            retry = fields.get("retry")
            found.append(
                Sse(
                    event=fields.get("event", [None])[-1],
                    data="\n".join(fields["data"]) if "data" in fields else None,
                    id=fields.get("id", [None])[-1],
                    retry=int(retry[-1]) if retry else None,
                )
            )
    return found


def outputs(messages: list[Sse]) -> list[Sse]:
    return [m for m in messages if m.event == "output"]


# --- list, detail -----------------------------------------------------------------------------


async def test_runs_are_listed_newest_first_filtered_by_job_and_status_and_paged(
    admin: FullAdmin,
) -> None:
    alpha = [await new_run(admin, "alpha") for _ in range(3)]
    beta = [await new_run(admin, "beta") for _ in range(2)]
    await move(admin, alpha[0], RunStatus.RUNNING)
    await move(admin, alpha[1], RunStatus.SUCCEEDED, exit_code=0)

    response = await admin.client.get("/runs", headers=VIEWER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"runs", "total", "limit", "offset"}
    assert (body["total"], body["limit"], body["offset"]) == (5, 100, 0)
    created = [run.run_id for run in [*alpha, *beta]]
    assert [run["runId"] for run in body["runs"]] == created[::-1]

    response = await admin.client.get("/runs", params={"job": "alpha"}, headers=VIEWER)
    assert {run["runId"] for run in response.json()["runs"]} == {r.run_id for r in alpha}
    assert response.json()["total"] == 3

    response = await admin.client.get("/runs", params={"status": "running"}, headers=VIEWER)
    assert [run["runId"] for run in response.json()["runs"]] == [alpha[0].run_id]
    response = await admin.client.get(
        "/runs", params={"job": "beta", "status": "succeeded"}, headers=VIEWER
    )
    assert response.json() == {"runs": [], "total": 0, "limit": 100, "offset": 0}

    response = await admin.client.get("/runs", params={"limit": 2, "offset": 1}, headers=VIEWER)
    body = response.json()
    assert [run["runId"] for run in body["runs"]] == created[::-1][1:3]
    assert (body["total"], body["limit"], body["offset"]) == (5, 2, 1)


async def test_bad_list_parameters_are_400_naming_the_field(admin: FullAdmin) -> None:
    for params, field in (
        ({"status": "exploded"}, "status"),
        ({"job": "Not A Job"}, "job"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"offset": -1}, "offset"),
    ):
        response = await admin.client.get("/runs", params=params, headers=VIEWER)
        message = assert_envelope(response, 400, "invalid_request")
        assert message.startswith(f"{field}:"), message
    response = await admin.client.get("/runs", params={"status": "exploded"}, headers=VIEWER)
    assert "succeeded" in assert_envelope(response, 400, "invalid_request")


async def test_a_run_detail_carries_every_field_of_the_record(admin: FullAdmin) -> None:
    run = await new_run(
        admin,
        "nightly",
        task_id=42,
        attempt=2,
        trigger=RunTrigger.SCHEDULE,
        actor="scheduler",
        schedule_name="every-night",
    )
    await move(admin, run, RunStatus.FETCHING, commit_sha="c" * 40)
    await move(admin, run, RunStatus.BUILDING, source_sha256=SHA, build_log="step 1/2\nok\n")
    await move(admin, run, RunStatus.RUNNING, image_id="sha256:" + "e" * 64, user="65534:65534")
    await admin.runtime.stores.runs.request_cancel(run.run_id)
    final = await move(
        admin,
        run,
        RunStatus.FAILED,
        exit_code=3,
        error="exited with code 3",
        output_bytes=1234,
        output_truncated=True,
        output_sha256="cd" * 32,
        artifacts=[RunArtifact(name="out/report.txt", size_bytes=7, sha256="ef" * 32)],
    )

    response = await admin.client.get(f"/runs/{run.run_id}", headers=VIEWER)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"run"}
    got = response.json()["run"]
    assert got == {
        "runId": run.run_id,
        "taskId": "42",
        "job": "nightly",
        "attempt": 2,
        "trigger": "schedule",
        "actor": "scheduler",
        "scheduleName": "every-night",
        "status": "failed",
        "finished": True,
        **{
            f"{stage}{suffix}": got[f"{stage}{suffix}"]
            for stage in (
                "queuedAt",
                "fetchingAt",
                "buildingAt",
                "runningAt",
                "finishedAt",
                "updatedAt",
                "cancelRequestedAt",
            )
            for suffix in ("", "Ms")
        },
        "cancelRequested": True,
        "exitCode": 3,
        "error": "exited with code 3",
        "commitSha": "c" * 40,
        "sourceSha256": SHA,
        "imageId": "sha256:" + "e" * 64,
        "outputBytes": 1234,
        "outputTruncated": True,
        "outputSha256": "cd" * 32,
        "artifacts": [{"name": "out/report.txt", "sizeBytes": 7, "sha256": "ef" * 32}],
        "user": "65534:65534",
        "params": None,
        "buildLog": "step 1/2\nok\n",
        "statusDetail": None,
    }
    stamps = {
        "queuedAt": final.queued_at,
        "fetchingAt": final.fetching_at,
        "buildingAt": final.building_at,
        "runningAt": final.running_at,
        "finishedAt": final.finished_at,
        "cancelRequestedAt": final.cancel_requested_at,
    }
    for name, moment in stamps.items():
        assert moment is not None
        assert got[name].endswith("Z"), got[name]
        assert got[f"{name}Ms"] == int(moment.timestamp() * 1000)
    ordered = [got[f"{name}Ms"] for name in ("queuedAt", "fetchingAt", "buildingAt", "runningAt")]
    assert ordered == sorted(ordered)
    assert ordered[-1] <= got["finishedAtMs"]

    listed = (await admin.client.get("/runs", headers=VIEWER)).json()["runs"][0]
    assert "buildLog" not in listed
    assert "statusDetail" not in listed
    only_detail = ("buildLog", "statusDetail")
    assert {k: v for k, v in got.items() if k not in only_detail} == listed


async def test_a_run_error_names_the_failing_step_without_host_paths(admin: FullAdmin) -> None:
    run = await new_run(admin, "nightly")
    error = (
        "BuildFailed: build failed: open "
        "/srv/longshore-data/work/run-42/src/app/Dockerfile: no such file; "
        "lookup registry on 127.0.0.11:53: no such host"
    )
    await move(admin, run, RunStatus.FETCHING, RunStatus.FAILED, error=error)

    shown = (await admin.client.get(f"/runs/{run.run_id}", headers=VIEWER)).json()["run"]
    listed = (await admin.client.get("/runs", headers=VIEWER)).json()["runs"][0]
    items = (await admin.client.get("/jobs/events", headers=VIEWER)).json()["events"]
    for text in (shown["error"], listed["error"], items[0]["error"]):
        assert text.startswith("BuildFailed: build failed: open …/Dockerfile")
        assert "longshore-data" not in text
        assert "/work/" not in text
        assert "127.0.0.11" not in text


async def test_a_queued_run_has_null_stages_and_no_cancel_request(admin: FullAdmin) -> None:
    run = await new_run(admin, "fresh")
    got = (await admin.client.get(f"/runs/{run.run_id}", headers=VIEWER)).json()["run"]
    assert got["status"] == "queued"
    assert got["finished"] is False
    assert got["taskId"] is None
    assert got["trigger"] == "api"
    for name in ("fetchingAt", "buildingAt", "runningAt", "finishedAt", "cancelRequestedAt"):
        assert got[name] is None
        assert got[f"{name}Ms"] is None
    assert got["cancelRequested"] is False
    assert got["artifacts"] == []
    assert got["outputBytes"] == 0


async def test_unknown_runs_and_artifacts_are_404(admin: FullAdmin) -> None:
    run = await new_run(admin)
    for path in (
        "/runs/0123456789abcdef0123456789abcdef",
        "/runs/not.a.run.id",
        "/runs/0123456789abcdef0123456789abcdef/output",
        "/runs/0123456789abcdef0123456789abcdef/output?follow=true",
        "/runs/0123456789abcdef0123456789abcdef/artifacts",
        "/runs/0123456789abcdef0123456789abcdef/artifacts/report.txt",
        f"/runs/{run.run_id}/artifacts/report.txt",
        f"/runs/{run.run_id}/artifacts/..%2F..%2Fetc%2Fpasswd",
    ):
        response = await admin.client.get(path, headers=VIEWER)
        assert_envelope(response, 404, "not_found")
    response = await admin.client.get("/runs")
    assert_envelope(response, 401, "unauthenticated")


# --- cancel -----------------------------------------------------------------------------------


async def define_job(admin: FullAdmin, name: str) -> None:
    await admin.runtime.stores.jobs.upsert(
        JobDefinition(
            name=name, source="tarball_path", source_fields={"tarball_path": f"{name}.tar.gz"}
        )
    )


async def work_until_settled(admin: FullAdmin, task_id: int, *, timeout: float = 60.0) -> None:
    """Run a worker (the runtime runs none) until the task is done or dead."""
    queue = admin.runtime.stores.queue
    options = WorkerOptions(
        concurrency=2, poll_interval=0.1, heartbeat_interval=1.0, shutdown_grace=5.0
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(
        Worker(queue, build_registry(admin.runtime.job_runner), options).run(stop)
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            task = await queue.get_task(task_id)
            if task is None or task.state in (TaskState.DONE, TaskState.DEAD):
                return
            assert time.monotonic() < deadline, "timed out waiting for the task"
            assert not worker.done(), "the worker stopped"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await worker


async def test_cancelling_a_queued_run_records_the_request_and_the_worker_cancels_it(
    admin: FullAdmin,
) -> None:
    await define_job(admin, "sleepy")
    task_id, run_id = await admin.runtime.job_runner.submit(
        "sleepy", trigger=RunTrigger.API, actor="alice"
    )
    response = await admin.client.post(f"/runs/{run_id}/cancel", headers=OPERATOR)
    assert response.status_code == 200, response.text
    run = response.json()["run"]
    assert run["runId"] == run_id
    assert run["status"] == "queued"
    assert run["cancelRequested"] is True
    assert run["cancelRequestedAtMs"] is not None
    [entry] = await admin.audit_entries(action="run.cancel")
    assert (entry.actor, entry.target, entry.status.value) == ("olga", run_id, "ok")

    # The worker that picks the task up records the cancellation without running anything.
    await work_until_settled(admin, task_id)
    run = (await admin.client.get(f"/runs/{run_id}", headers=VIEWER)).json()["run"]
    assert run["status"] == "cancelled"
    assert run["finishedAt"] is not None
    assert run["runningAt"] is None

    response = await admin.client.post(f"/runs/{run_id}/cancel", headers=OPERATOR)
    assert "finished" in assert_envelope(response, 409, "run_finished")


async def test_cancelling_a_finished_run_is_409_and_audited(admin: FullAdmin) -> None:
    run = await move(admin, await new_run(admin), RunStatus.RUNNING, RunStatus.SUCCEEDED)
    response = await admin.client.post(f"/runs/{run.run_id}/cancel", headers=OPERATOR)
    message = assert_envelope(response, 409, "run_finished")
    assert "succeeded" in message
    assert run.run_id in message
    stored = await admin.runtime.stores.runs.get(run.run_id)
    assert stored is not None
    assert stored.cancel_requested_at is None
    [entry] = await admin.audit_entries(action="run.cancel")
    assert (entry.target, entry.status.value) == (run.run_id, "error")
    assert "409" in entry.detail


async def test_cancel_needs_an_operator_and_refusals_are_audited(admin: FullAdmin) -> None:
    run = await new_run(admin)
    response = await admin.client.post(f"/runs/{run.run_id}/cancel", headers=VIEWER)
    assert_envelope(response, 403, "forbidden")
    stored = await admin.runtime.stores.runs.get(run.run_id)
    assert stored is not None
    assert stored.cancel_requested_at is None
    response = await admin.client.post("/runs/0123456789abcdef/cancel", headers=ADMIN)
    assert_envelope(response, 404, "not_found")
    entries = await admin.audit_entries(action="run.cancel")
    assert [(e.actor, e.target, e.status.value) for e in reversed(entries)] == [
        ("vic", run.run_id, "error"),
        ("alice", "0123456789abcdef", "error"),
    ]


async def test_cancel_is_a_risky_action_that_needs_approval_when_required(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(
        backend, queue_location, tmp_path, require_approval=True, approval_token=APPROVAL
    ) as admin:
        run = await new_run(admin)
        response = await admin.client.post(f"/runs/{run.run_id}/cancel", headers=OPERATOR)
        assert_envelope(response, 403, "approval_required")
        response = await admin.client.post(
            f"/runs/{run.run_id}/cancel", headers={**OPERATOR, "X-Admin-Approval": APPROVAL}
        )
        assert response.status_code == 200, response.text
        assert response.json()["run"]["cancelRequested"] is True
        entries = await admin.audit_entries(action="run.cancel")
        assert [e.status.value for e in reversed(entries)] == ["error", "ok"]


# --- output -----------------------------------------------------------------------------------


async def test_the_output_of_a_running_run_is_what_its_events_carried_so_far(
    admin: FullAdmin,
) -> None:
    run = await move(admin, await new_run(admin), RunStatus.RUNNING)
    other = await move(admin, await new_run(admin), RunStatus.RUNNING)
    response = await admin.client.get(f"/runs/{run.run_id}/output", headers=VIEWER)
    assert response.status_code == 200
    assert response.text == ""
    await output_events(admin, run, "first line\n", "second ", "line é\n")
    await output_events(admin, other, "not mine\n")
    response = await admin.client.get(f"/runs/{run.run_id}/output", headers=VIEWER)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "first line\nsecond line é\n"
    response = await admin.client.get(
        f"/runs/{run.run_id}/output", params={"follow": "maybe"}, headers=VIEWER
    )
    assert assert_envelope(response, 400, "invalid_request").startswith("follow:")


async def test_a_finished_run_serves_its_retained_output_from_the_artifact_store(
    admin: FullAdmin,
) -> None:
    run = await move(admin, await new_run(admin), RunStatus.RUNNING)
    await output_events(admin, run, "live copy\n")
    retained = b"head\n[... 9000 bytes omitted ...]\ntail \xff\n"
    blob = admin.runtime.artifacts.put_chunks([retained])
    await move(admin, run, RunStatus.SUCCEEDED, output_sha256=blob.sha256, output_bytes=9000)
    response = await admin.client.get(f"/runs/{run.run_id}/output", headers=VIEWER)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == str(len(retained))
    assert response.content == retained
    response = await admin.client.get(
        f"/runs/{run.run_id}/output", headers={**VIEWER, "Range": "bytes=-6"}
    )
    assert response.status_code == 206
    assert response.content == retained[-6:]


async def test_following_a_run_streams_its_output_then_ends_and_resumes_after_an_id(
    admin: FullAdmin,
) -> None:
    run = await move(admin, await new_run(admin, "chatty"), RunStatus.RUNNING)
    url = f"/runs/{run.run_id}/output"
    early = await output_events(admin, run, "one\n", "two\n")
    # Followed while it runs: stored chunks first, then live ones, then the end.
    follow = asyncio.create_task(
        admin.client.get(url, params={"follow": "true"}, headers=VIEWER, timeout=60)
    )
    late = await output_events(admin, run, "three\n", "four\r\nfive\n")
    finished = await move(admin, run, RunStatus.SUCCEEDED, exit_code=0)
    end = await status_event(admin, finished, EventType.RUN_SUCCEEDED)
    response = await follow
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["cache-control"] == "no-store"
    messages = parse_sse(response.text)
    assert messages[0].retry == runs_routes.RETRY_MS
    got = outputs(messages)
    assert [m.id for m in got] == [str(e.id) for e in [*early, *late]]
    assert "".join(m.json()["text"] for m in got) == "one\ntwo\nthree\nfour\r\nfive\n"
    assert [m.json()["seq"] for m in got] == [0, 1, 0, 1]
    assert messages[-1].event == "end"
    assert messages[-1].id == str(end.id)
    assert messages[-1].json()["status"] == "succeeded"
    assert messages[-1].json()["exitCode"] == 0

    # Resuming after the second chunk (header, or the query for clients without headers).
    after = str(early[1].id)
    for params, headers in (
        ({"follow": "true"}, {**VIEWER, "Last-Event-ID": after}),
        ({"follow": "true", "lastEventId": after}, VIEWER),
        # A browser's header wins over the query of the URL it first connected to.
        ({"follow": "true", "lastEventId": "0"}, {**VIEWER, "Last-Event-ID": after}),
    ):
        resumed = parse_sse((await admin.client.get(url, params=params, headers=headers)).text)
        assert [m.id for m in outputs(resumed)] == [str(e.id) for e in late]
        assert resumed[-1].event == "end"
        assert resumed[-1].id == str(end.id)

    # Resuming after the end event: nothing more but an end (from the record).
    resumed = parse_sse(
        (
            await admin.client.get(
                url, params={"follow": "true"}, headers={**VIEWER, "Last-Event-ID": str(end.id)}
            )
        ).text
    )
    assert [m.event for m in resumed if m.event] == ["end"]
    assert resumed[-1].json()["status"] == "succeeded"


async def test_a_bad_last_event_id_is_400_naming_it(admin: FullAdmin) -> None:
    run = await new_run(admin)
    url = f"/runs/{run.run_id}/output"
    response = await admin.client.get(
        url, params={"follow": "true"}, headers={**VIEWER, "Last-Event-ID": "abc"}
    )
    assert assert_envelope(response, 400, "invalid_request").startswith("Last-Event-ID:")
    response = await admin.client.get(
        url, params={"follow": "1", "lastEventId": "-3"}, headers=VIEWER
    )
    assert assert_envelope(response, 400, "invalid_request").startswith("lastEventId:")
    response = await admin.client.get(url, params={"follow": "true"})
    assert_envelope(response, 401, "unauthenticated")


async def test_a_run_that_ends_without_its_final_event_still_ends_the_stream(
    admin: FullAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs_routes, "IDLE_CHECK_SECONDS", 0.05)
    run = await move(admin, await new_run(admin), RunStatus.RUNNING)
    [chunk] = await output_events(admin, run, "only line\n")
    follow = asyncio.create_task(
        admin.client.get(
            f"/runs/{run.run_id}/output", params={"follow": "true"}, headers=VIEWER, timeout=60
        )
    )
    await move(admin, run, RunStatus.FAILED, error="worker lost")  # and no RunFailed event
    messages = parse_sse((await follow).text)
    assert [m.id for m in outputs(messages)] == [str(chunk.id)]
    assert messages[-1].event == "end"
    assert messages[-1].id is None
    assert messages[-1].json()["status"] == "failed"
    assert messages[-1].json()["error"] == "worker lost"


async def test_a_follower_dropped_for_being_slow_resumes_without_losing_output(
    admin: FullAdmin, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With a one-event subscriber buffer, a burst overflows it: the route subscribes again
    from the last event it sent, and every chunk arrives once, in order."""
    options = EventStoreOptions(directory=tmp_path / "tiny-buffer", subscriber_buffer=1)
    async with await FileEventStore.open(options) as events:
        services = AdminServices(
            queue=admin.runtime.stores.queue,
            audit=AuditLog(events),
            events=events,
            runs=admin.runtime.stores.runs,
            artifacts=admin.runtime.artifacts,
        )
        app = create_app(services=services, config=AdminConfig(tokens=TOKENS, roles=ROLES))
        run = await move(admin, await new_run(admin), RunStatus.RUNNING)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=str(admin.client.base_url)) as c:
            follow = asyncio.create_task(
                c.get(
                    f"/runs/{run.run_id}/output",
                    params={"follow": "true"},
                    headers=VIEWER,
                    timeout=60,
                )
            )
            while events.hub.subscriber_count == 0:  # the follower is live
                await asyncio.sleep(0.01)
            burst = [
                NewEvent.run(
                    EventType.RUN_OUTPUT_EMITTED,
                    job=run.job,
                    run_id=run.run_id,
                    seq=n,
                    offset=0,
                    bytes=8,
                    text=f"line {n}\n",
                )
                for n in range(50)
            ]
            with caplog.at_level(logging.INFO, logger=runs_routes.__name__):
                sent = await events.append_many(burst)
                finished = await move(admin, run, RunStatus.SUCCEEDED, exit_code=0)
                await events.append(
                    NewEvent.run(
                        EventType.RUN_SUCCEEDED,
                        job=run.job,
                        run_id=run.run_id,
                        status=finished.status.value,
                    )
                )
                messages = parse_sse((await follow).text)
    assert [m.id for m in outputs(messages)] == [str(e.id) for e in sent]
    assert messages[-1].event == "end"
    assert any("resubscribing" in record.message for record in caplog.records)


# --- artifacts --------------------------------------------------------------------------------


async def run_with_artifacts(admin: FullAdmin, files: dict[str, bytes]) -> Run:
    recorded = []
    for name, data in files.items():
        blob = admin.runtime.artifacts.put_chunks([data])
        recorded.append(RunArtifact(name=name, size_bytes=blob.size, sha256=blob.sha256))
    run = await new_run(admin)
    return await move(admin, run, RunStatus.RUNNING, RunStatus.SUCCEEDED, artifacts=recorded)


async def test_artifacts_are_listed_and_downloaded_whole_or_by_range(admin: FullAdmin) -> None:
    data = bytes(range(256)) * 40
    run = await run_with_artifacts(admin, {"report.txt": b"all good\n", "sub/dir/data.bin": data})
    response = await admin.client.get(f"/runs/{run.run_id}/artifacts", headers=VIEWER)
    assert response.status_code == 200
    digest = hashlib.sha256(data).hexdigest()
    assert response.json() == {
        "artifacts": [
            {
                "name": "report.txt",
                "sizeBytes": 9,
                "sha256": hashlib.sha256(b"all good\n").hexdigest(),
            },
            {"name": "sub/dir/data.bin", "sizeBytes": len(data), "sha256": digest},
        ]
    }

    for name in ("sub/dir/data.bin", "sub%2Fdir%2Fdata.bin"):
        response = await admin.client.get(f"/runs/{run.run_id}/artifacts/{name}", headers=VIEWER)
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["accept-ranges"] == "bytes"
        assert response.headers["etag"] == f'"{digest}"'
        assert 'filename="data.bin"' in response.headers["content-disposition"]
        assert response.headers["content-disposition"].startswith("attachment;")

    url = f"/runs/{run.run_id}/artifacts/sub/dir/data.bin"
    size = len(data)
    for header, start, end in (
        ("bytes=10-19", 10, 20),
        ("bytes=10-", 10, size),
        ("bytes=-5", size - 5, size),
        ("bytes=100-999999", 100, size),
        ("bytes=-999999", 0, size),
    ):
        response = await admin.client.get(url, headers={**VIEWER, "Range": header})
        assert response.status_code == 206, header
        assert response.content == data[start:end]
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert response.headers["content-length"] == str(end - start)

    # Several ranges, other units, malformed values, a stale If-Range: the whole artifact.
    for headers in (
        {"Range": "bytes=0-1,5-6"},
        {"Range": "items=0-1"},
        {"Range": "bytes=9-3"},
        {"Range": "bytes=0-1", "If-Range": '"0000"'},
    ):
        response = await admin.client.get(url, headers={**VIEWER, **headers})
        assert response.status_code == 200, headers
        assert response.content == data
    response = await admin.client.get(
        url, headers={**VIEWER, "Range": "bytes=0-1", "If-Range": f'"{digest}"'}
    )
    assert response.status_code == 206
    assert response.content == data[:2]

    response = await admin.client.get(url, headers={**VIEWER, "Range": f"bytes={size}-"})
    assert_envelope(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == f"bytes */{size}"


# --- on real Docker ---------------------------------------------------------------------------


def job_tarball(script: str) -> bytes:
    files = {
        "Dockerfile": (
            f'FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n'.encode()
        ),
        "job.sh": script.encode(),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"proj/{name}")
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@asynccontextmanager
async def served(admin: FullAdmin) -> AsyncIterator[str]:
    """The admin app over ``admin``'s runtime behind a real uvicorn server on loopback (an
    in-process transport would hold a streamed response back until it ends); its base URL."""
    app = create_app(services=admin.services, config=AdminConfig(tokens=TOKENS, roles=ROLES))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/admin/v1"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_a_follower_that_disconnects_releases_its_subscription(admin: FullAdmin) -> None:
    events = admin.runtime.events
    before = events.hub.subscriber_count
    run = await move(admin, await new_run(admin), RunStatus.RUNNING)
    [chunk] = await output_events(admin, run, "hello\n")
    async with (
        served(admin) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30, trust_env=False) as client,
    ):
        async with client.stream(
            "GET", f"/runs/{run.run_id}/output", params={"follow": "true"}, headers=VIEWER
        ) as response:
            assert response.status_code == 200
            seen = ""
            # Held until the client hangs up: a dropped iterator is closed when collected,
            # and closing it closes the connection before the stream could go live.
            texts = response.aiter_text()
            async for text in texts:
                seen += text
                if f"id: {chunk.id}" in seen:
                    break
            deadline = time.monotonic() + 30
            while events.hub.subscriber_count != before + 1:  # it follows live now
                assert time.monotonic() < deadline, "the follow stream never went live"
                await asyncio.sleep(0.05)
        # The client hung up while the run goes on: the stream's subscription is closed.
        deadline = time.monotonic() + 30
        while events.hub.subscriber_count != before:
            assert time.monotonic() < deadline, "the follow stream kept its subscription"
            await asyncio.sleep(0.05)


async def test_ending_the_apps_streams_ends_a_followed_run_that_is_still_going(
    admin: FullAdmin,
) -> None:
    """What the server does before it stops: an open follow stream ends (without an ``end``
    event: the run goes on, and the client resumes by id) instead of holding up the stop."""
    events = admin.runtime.events
    before = events.hub.subscriber_count
    run = await move(admin, await new_run(admin), RunStatus.RUNNING)
    [chunk] = await output_events(admin, run, "hello\n")
    app = create_app(services=admin.services, config=AdminConfig(tokens=TOKENS, roles=ROLES))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        request = asyncio.create_task(
            client.get(f"/runs/{run.run_id}/output", params={"follow": "true"}, headers=VIEWER)
        )
        deadline = time.monotonic() + 30
        while events.hub.subscriber_count != before + 1:  # it follows live now
            assert time.monotonic() < deadline, "the follow stream never went live"
            assert not request.done(), request
            await asyncio.sleep(0.05)
        end_event_streams(app)
        response = await asyncio.wait_for(request, 30)
    assert response.status_code == 200
    messages = parse_sse(response.text)
    assert [m.id for m in outputs(messages)] == [str(chunk.id)]
    assert "end" not in [m.event for m in messages]
    assert events.hub.subscriber_count == before


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_real_run_is_followed_live_and_its_output_and_artifacts_download(
    admin: FullAdmin, tmp_path: Path
) -> None:
    ensure_busybox_image(docker_client())
    marker = uuid.uuid4().hex[:8]
    lines = [f"line {n} of {marker}" for n in range(5)]
    script = (
        "mkdir -p /artifacts/reports\n"
        "head -c 3000 /dev/urandom > /artifacts/reports/blob.bin\n"
        + "".join(f"echo '{line}'\nsleep 0.3\n" for line in lines)
    )
    (tmp_path / "tarballs" / "live.tar.gz").write_bytes(job_tarball(script))
    await define_job(admin, "live")
    task_id, run_id = await admin.runtime.job_runner.submit(
        "live", trigger=RunTrigger.API, actor="alice"
    )
    runs = admin.runtime.stores.runs

    async with (
        served(admin) as base_url,
        httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(30.0, read=None), trust_env=False
        ) as client,
    ):
        worker = asyncio.create_task(work_until_settled(admin, task_id, timeout=120))
        received: list[Sse] = []
        while_running: list[bool] = []
        async with client.stream(
            "GET", f"/runs/{run_id}/output", params={"follow": "true"}, headers=VIEWER
        ) as response:
            assert response.status_code == 200
            assert response.headers["x-accel-buffering"] == "no"
            buffer = ""
            async for text in response.aiter_text():
                buffer += text
                *blocks, buffer = buffer.split("\n\n")
                for block in blocks:
                    for message in parse_sse(block + "\n\n"):
                        received.append(message)
                        if message.event == "output":
                            current = await runs.get(run_id)
                            while_running.append(
                                current is not None and not current.status.is_final
                            )
        await worker
        run = await runs.get(run_id)
        assert run is not None
        assert run.status is RunStatus.SUCCEEDED, run.error

        # In order, ending with the end event; some arrived while the container ran.
        chunks = outputs(received)
        assert chunks
        assert received[-1].event == "end"
        assert received[-1].json()["status"] == "succeeded"
        assert [int(m.id or 0) for m in chunks] == sorted(int(m.id or 0) for m in chunks)
        followed = "".join(m.json()["text"] for m in chunks)
        assert followed.splitlines() == lines
        assert any(while_running)

        # The full retained output is what was followed.
        response = await client.get(f"/runs/{run_id}/output", headers=VIEWER)
        assert response.status_code == 200
        assert response.text == followed

        # Resuming after a middle chunk gets only the later ones.
        assert len(chunks) >= 3
        middle = len(chunks) // 2
        response = await client.get(
            f"/runs/{run_id}/output",
            params={"follow": "true"},
            headers={**VIEWER, "Last-Event-ID": str(chunks[middle].id)},
        )
        resumed = parse_sse(response.text)
        assert [m.id for m in outputs(resumed)] == [m.id for m in chunks[middle + 1 :]]
        assert resumed[-1].event == "end"

        # The artifact the container wrote: listed, downloaded whole and by range.
        listing = (await client.get(f"/runs/{run_id}/artifacts", headers=VIEWER)).json()
        [artifact] = listing["artifacts"]
        assert artifact["name"] == "reports/blob.bin"
        assert artifact["sizeBytes"] == 3000
        url = f"/runs/{run_id}/artifacts/reports/blob.bin"
        whole = await client.get(url, headers=VIEWER)
        assert whole.status_code == 200
        assert whole.headers["content-length"] == "3000"
        assert "blob.bin" in whole.headers["content-disposition"]
        assert hashlib.sha256(whole.content).hexdigest() == artifact["sha256"]
        part = await client.get(url, headers={**VIEWER, "Range": "bytes=1000-1999"})
        assert part.status_code == 206
        assert part.headers["content-range"] == "bytes 1000-1999/3000"
        assert part.content == whole.content[1000:2000]


async def test_the_openapi_document_lists_the_run_routes(admin: FullAdmin) -> None:
    doc = (await admin.client.get("/openapi.json", headers=VIEWER)).json()
    paths = doc["paths"]
    base = "/admin/v1/runs"
    assert set(paths[base]) == {"get"}
    assert set(paths[f"{base}/{{run_id}}"]) == {"get"}
    assert set(paths[f"{base}/{{run_id}}/cancel"]) == {"post"}
    assert set(paths[f"{base}/{{run_id}}/artifacts"]) == {"get"}
    assert set(paths[f"{base}/{{run_id}}/artifacts/{{name}}"]) == {"get"}
    output = paths[f"{base}/{{run_id}}/output"]["get"]
    assert "follow" in {parameter["name"] for parameter in output["parameters"]}
    assert set(output["responses"]["200"]["content"]) >= {"text/plain", "text/event-stream"}
    statuses = paths[base]["get"]["parameters"]
    [status] = [p for p in statuses if p["name"] == "status"]
    assert "422" not in paths[base]["get"]["responses"]
    assert status["schema"]

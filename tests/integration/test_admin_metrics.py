"""Metrics over a whole runtime (SQLite and PostgreSQL): queue depth per queue and state,
runs, schedules, run/build durations and schedule lag from the event store, and HTTP requests
by route template; the JSON snapshot and the Prometheus text agree."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.runtime import build_registry
from service.worker import Worker, WorkerOptions
from store.events.models import EventType, NewEvent, Stream
from store.jobs.models import JobDefinition, NewRun, RunStatus, RunTrigger
from store.queue.models import NewTask, TaskState
from store.schedules.models import Schedule
from tests.integration.admin_harness import ADMIN, VIEWER, FullAdmin, full_admin
from tests.integration.docker_images import docker_client, ensure_busybox_image
from tests.integration.test_job_runs import job_files, tarball

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def admin(backend: str, queue_location: Any, tmp_path: Path) -> AsyncIterator[FullAdmin]:
    settings = {"durable_cron_handlers": ("builtin.noop",)}
    async with full_admin(backend, queue_location, tmp_path, settings=settings) as admin:
        yield admin


def parse_prometheus(text: str) -> Samples:
    """Every sample of the text format, by name and labels (fails on malformed text)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def parse_json(body: dict[str, Any]) -> Samples:
    return {
        (sample["name"], frozenset(sample["labels"].items())): sample["value"]
        for family in body["metrics"].values()
        for sample in family["samples"]
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics/prometheus", headers=VIEWER)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == PROMETHEUS_TYPE
    return parse_prometheus(response.text)


async def test_queue_depth_is_exported_per_queue_and_state(admin: FullAdmin) -> None:
    queue = admin.runtime.stores.queue
    later = datetime.now(UTC) + timedelta(hours=1)
    for n in range(3):
        await queue.enqueue(NewTask(handler="send_email", queue="mail", payload={"n": n}))
    await queue.enqueue(NewTask(handler="send_email", queue="mail", run_at=later))
    await queue.enqueue(NewTask(handler="report", queue="reports"))
    claimed = await queue.claim("w1", 1, lease=timedelta(seconds=30), queues=["mail"])
    assert len(claimed) == 1
    await queue.set_queue_paused("reports", True)

    samples = await scrape(admin.client)

    assert value(samples, "longshore_queue_tasks", queue="mail", state="ready") == 2
    assert value(samples, "longshore_queue_tasks", queue="mail", state="scheduled") == 1
    assert value(samples, "longshore_queue_tasks", queue="mail", state="running") == 1
    assert value(samples, "longshore_queue_tasks", queue="mail", state="dead") == 0
    assert value(samples, "longshore_queue_tasks", queue="reports", state="ready") == 1
    assert value(samples, "longshore_queue_paused", queue="reports") == 1
    assert value(samples, "longshore_queue_paused", queue="mail") == 0
    assert value(samples, "longshore_dequeue_paused") == 0

    # The next scrape reads the stores again: depth follows the queue.
    await queue.enqueue(NewTask(handler="send_email", queue="mail"))
    samples = await scrape(admin.client)
    assert value(samples, "longshore_queue_tasks", queue="mail", state="ready") == 3


async def test_json_snapshot_has_the_same_families_as_the_prometheus_text(
    admin: FullAdmin,
) -> None:
    await admin.runtime.stores.queue.enqueue(NewTask(handler="send_email", queue="mail"))
    await admin.runtime.stores.runs.create(NewRun(job="nightly"))
    await admin.runtime.manager.save(Schedule(name="builtin.noop", spec="@hourly"))

    response = await admin.client.get("/metrics", headers=VIEWER)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"atMs", "metrics"}
    tasks = body["metrics"]["longshore_queue_tasks"]
    assert tasks["type"] == "gauge"
    assert tasks["help"]
    from_json = parse_json(body)
    assert value(from_json, "longshore_queue_tasks", queue="mail", state="ready") == 1
    assert value(from_json, "longshore_runs_unfinished", status="queued") == 1
    assert value(from_json, "longshore_runs_unfinished", status="running") == 0
    assert value(from_json, "longshore_schedules", status="healthy") == 1
    assert value(from_json, "longshore_schedules", status="paused") == 0

    from_text = await scrape(admin.client)
    gauges = {key for key in from_json if key[0].startswith(("longshore_queue", "longshore_runs"))}
    assert gauges
    assert {key: from_text[key] for key in gauges} == {key: from_json[key] for key in gauges}


async def test_http_requests_are_counted_by_route_template_never_by_raw_path(
    admin: FullAdmin,
) -> None:
    client = admin.client
    await client.post("/queues/mail/weight", json={"weight": 3}, headers=ADMIN)
    assert (await client.get("/queues/mail", headers=VIEWER)).status_code == 200
    assert (await client.get("/queues/mail", headers=VIEWER)).status_code == 200
    assert (await client.get("/queues/nothing-here", headers=VIEWER)).status_code == 404
    assert (await client.get("/no/such/route-xyz", headers=VIEWER)).status_code == 404

    response = await client.get("/metrics", params={"format": "prometheus"}, headers=VIEWER)
    assert response.status_code == 200
    assert response.headers["content-type"] == PROMETHEUS_TYPE
    samples = parse_prometheus(response.text)

    template = "/admin/v1/queues/{name}"
    total = "longshore_http_requests_total"
    assert value(samples, total, method="GET", route=template, status="200") == 2
    assert value(samples, total, method="GET", route=template, status="404") == 1
    assert value(samples, total, method="POST", route=f"{template}/weight", status="200") == 1
    assert value(samples, total, method="GET", route="unmatched", status="404") == 1
    count = "longshore_http_request_duration_seconds_count"
    assert value(samples, count, method="GET", route=template) == 3
    routes = {dict(labels).get("route") for _, labels in samples}
    assert not any(r and ("mail" in r or "nothing-here" in r or "xyz" in r) for r in routes)


async def test_run_and_build_durations_and_schedule_lag_come_from_the_event_store(
    admin: FullAdmin,
) -> None:
    events = admin.runtime.events
    start = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)

    def finished(job: str, kind: EventType, run_id: str, **stages: float) -> NewEvent:
        """A final run event as the job runner writes it (stage times in ISO 8601)."""
        times = {
            f"{stage}At": (start + timedelta(seconds=s)).isoformat() for stage, s in stages.items()
        }
        data = {"runId": run_id, "job": job, "queuedAt": start.isoformat(), **times}
        return NewEvent(stream=Stream.RUNS, key=job, type=kind, run_id=run_id, data=data)

    # Finished before the metrics existed (no request yet): not observed.
    await events.append(finished("nightly", EventType.RUN_SUCCEEDED, "r0", running=1, finished=2))
    await scrape(admin.client)

    await events.append(
        finished("nightly", EventType.RUN_SUCCEEDED, "r1", building=1, running=11, finished=41)
    )
    await events.append(finished("nightly", EventType.RUN_FAILED, "r2", running=2, finished=5))
    await events.append(finished("backup", EventType.RUN_CANCELLED, "r3"))
    scheduled = start.isoformat()
    fired = (start + timedelta(seconds=2.5)).isoformat()
    for trigger in ("tick", "manual"):
        await events.append(
            NewEvent.schedule(
                EventType.SCHEDULE_FIRED,
                schedule="hourly",
                scheduledAt=scheduled,
                firedAt=fired,
                trigger=trigger,
            )
        )

    samples = await scrape(admin.client)

    finished_total = "longshore_runs_finished_total"
    assert value(samples, finished_total, job="nightly", status="succeeded") == 1
    assert value(samples, finished_total, job="nightly", status="failed") == 1
    assert value(samples, finished_total, job="backup", status="cancelled") == 1
    run = "longshore_run_duration_seconds"
    assert value(samples, f"{run}_count", job="nightly", status="succeeded") == 1
    assert value(samples, f"{run}_sum", job="nightly", status="succeeded") == 30
    assert value(samples, f"{run}_bucket", job="nightly", status="succeeded", le="15.0") == 0
    assert value(samples, f"{run}_bucket", job="nightly", status="succeeded", le="30.0") == 1
    assert value(samples, f"{run}_sum", job="nightly", status="failed") == 3
    assert value(samples, f"{run}_count", job="backup", status="cancelled") is None
    build = "longshore_build_duration_seconds"
    assert value(samples, f"{build}_count", job="nightly") == 1
    assert value(samples, f"{build}_sum", job="nightly") == 10
    lag = "longshore_schedule_fire_lag_seconds"
    assert value(samples, f"{lag}_count") == 1
    assert value(samples, f"{lag}_sum") == 2.5

    # Each event is observed once, however often the metrics are read.
    samples = await scrape(admin.client)
    assert value(samples, f"{run}_count", job="nightly", status="succeeded") == 1
    assert value(samples, finished_total, job="nightly", status="succeeded") == 1


async def test_format_must_be_json_or_prometheus_and_a_caller_is_needed(
    admin: FullAdmin,
) -> None:
    response = await admin.client.get("/metrics", params={"format": "xml"}, headers=VIEWER)
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "invalid_request"
    assert "format" in body["error"]["message"]

    assert (await admin.client.get("/metrics")).status_code == 401
    assert (await admin.client.get("/metrics/prometheus")).status_code == 401


@pytest.fixture(scope="module")
def docker_api() -> Any:
    api = docker_client()
    ensure_busybox_image(api)
    return api


@pytest.mark.docker
@pytest.mark.slow
async def test_a_real_run_is_counted_with_its_build_and_run_durations(
    backend: str, queue_location: Any, tmp_path: Path, docker_api: Any
) -> None:
    tarballs = tmp_path / "tarballs"
    tarballs.mkdir()
    # A script no other test builds, so the image is built (not taken from the cache).
    files = job_files(f"echo metrics {uuid.uuid4().hex}\n")
    (tarballs / "job.tar.gz").write_bytes(tarball(files))
    settings = {"job_tarball_dir": tarballs}
    async with full_admin(backend, queue_location, tmp_path, settings=settings) as admin:
        runtime = admin.runtime
        await runtime.stores.jobs.upsert(
            JobDefinition(
                name="hello", source="tarball_path", source_fields={"tarball_path": "job.tar.gz"}
            )
        )
        await scrape(admin.client)  # the metrics exist from here on
        task_id, _ = await runtime.job_runner.submit("hello", trigger=RunTrigger.API, actor="t")

        registry = build_registry(runtime.job_runner)
        options = WorkerOptions(
            concurrency=1, poll_interval=0.1, heartbeat_interval=1.0, shutdown_grace=5.0
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(Worker(runtime.stores.queue, registry, options).run(stop))
        try:
            while (task := await runtime.stores.queue.get_task(task_id)) is not None and (
                task.state not in (TaskState.DEAD, TaskState.DONE)
            ):
                assert not worker.done(), "the worker stopped"
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await worker
        [run] = await runtime.stores.runs.find_by_task(task_id)
        assert run.status is RunStatus.SUCCEEDED, run.error

        samples = await scrape(admin.client)

    labels = {"job": "hello", "status": "succeeded"}
    assert value(samples, "longshore_runs_finished_total", **labels) == 1
    assert value(samples, "longshore_run_duration_seconds_count", **labels) == 1
    assert value(samples, "longshore_build_duration_seconds_count", job="hello") == 1
    assert value(samples, "longshore_runs_unfinished", status="running") == 0
    assert value(samples, "longshore_runs_unfinished", status="queued") == 0

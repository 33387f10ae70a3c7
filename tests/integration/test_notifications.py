"""Notifications end to end: real container runs (the local busybox image) on a real worker,
rules saved over the admin API, deliveries through the durable queue to a real webhook
receiver on loopback, signatures checked as a receiver would."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from service.backends import open_store
from service.runtime import build_registry
from service.worker import Worker, WorkerOptions
from store.events import EventFilter, Stream
from store.jobs.models import RunStatus, RunTrigger
from store.notifications.models import Channel, NotificationRule, RuleEvent, RuleScope
from store.queue.models import TaskState
from tests.integration.admin_harness import ADMIN, OPERATOR, VIEWER, FullAdmin, full_admin
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image
from tests.integration.webhook_receiver import Receiver

pytestmark = [pytest.mark.docker, pytest.mark.slow]
only_embedded = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
"""The journey of failures runs on both backends; the others on the embedded store."""

SECRET = "hook-secret-7f3a9c"


def job_tarball() -> bytes:
    files = {
        "Dockerfile": f'FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n',
        "job.sh": (
            'echo "mode=$MODE"\n'
            'if [ "$MODE" = slow ]; then sleep 4; exit 0; fi\n'
            '[ "$MODE" = ok ] || exit 3\n'
        ),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"proj/{name}")
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@asynccontextmanager
async def notifying_admin(
    backend: str,
    location: Any,
    tmp_path: Path,
    *,
    config: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[FullAdmin]:
    ensure_busybox_image(docker_client())
    tarballs = tmp_path / "tarballs"
    tarballs.mkdir(exist_ok=True)
    data = job_tarball()
    (tarballs / "flaky.tar.gz").write_bytes(data)
    overrides = {
        "job_tarball_dir": tarballs,
        "notify_retry_seconds": 0.2,
        "notify_attempts": 8,
        **settings,
    }
    async with full_admin(
        backend, location, tmp_path, settings=overrides, **(config or {})
    ) as admin:
        job = {
            "name": "flaky",
            "source": "tarball_path",
            "tarballPath": "flaky.tar.gz",
            "tarballSha256": hashlib.sha256(data).hexdigest(),
            "env": ["MODE=ok"],
        }
        response = await admin.client.post("/jobs", json=job, headers=ADMIN)
        assert response.status_code == 201, response.text
        yield admin


@asynccontextmanager
async def working(admin: FullAdmin) -> AsyncIterator[None]:
    """A real worker (with the notification hook and ``notify.deliver``) while inside."""
    runtime = admin.runtime
    registry = build_registry(runtime.job_runner, deliverer=runtime.deliverer)
    options = WorkerOptions(concurrency=2, poll_interval=0.05, heartbeat_interval=1.0)
    stop = asyncio.Event()
    worker = Worker(
        runtime.stores.queue, registry, options, observer=runtime.notification_observer()
    )
    running = asyncio.create_task(worker.run(stop))
    _WORKERS.append(worker)
    try:
        yield
    finally:
        _WORKERS.remove(worker)
        stop.set()
        await running


async def until(
    check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


_WORKERS: list[Worker] = []
"""The workers of ``working`` blocks now open."""


async def queue_idle(admin: FullAdmin) -> bool:
    """Nothing waits or runs, and no worker is still in a handler or its hooks (a run's
    notifications are enqueued after its task's verdict is written)."""
    if any(worker.busy for worker in _WORKERS):
        return False
    queues = await admin.runtime.stores.queue.list_queues()
    return all(q.ready == 0 and q.running == 0 and q.scheduled == 0 for q in queues)


async def run_job(admin: FullAdmin, mode: str, *, schedule: str | None = None) -> None:
    """Run ``flaky`` once (``ok`` succeeds, anything else exits 3), as ``schedule``'s run
    when given, and wait until every notification it caused is settled."""
    job = (await admin.client.get("/jobs/flaky", headers=VIEWER)).json()["job"]
    job.update(env=[f"MODE={mode}"])
    saved = await admin.client.post("/jobs", json=_definition(job), headers=ADMIN)
    assert saved.status_code == 200, saved.text
    if schedule is None:
        started = await admin.client.post("/jobs/flaky/run", headers=OPERATOR)
        task_id = int(started.json()["taskId"])
    else:
        task_id, _ = await admin.runtime.job_runner.submit(
            "flaky", trigger=RunTrigger.SCHEDULE, actor=None, schedule_name=schedule
        )
    queue = admin.runtime.stores.queue

    async def settled() -> bool:
        task = await queue.get_task(task_id)
        return task is None or task.state in (TaskState.DONE, TaskState.DEAD)

    try:
        await until(settled, "the job run")
    except AssertionError:
        runs = await admin.runtime.stores.runs.find_by_task(task_id)
        raise AssertionError(f"{await queue.get_task(task_id)} {runs}") from None
    await until(lambda: queue_idle(admin), "the notifications to settle")


def _definition(job: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "source", "tarballPath", "tarballSha256", "env")
    return {key: job[key] for key in keys}


async def save_rule(admin: FullAdmin, name: str, **rule: Any) -> dict[str, Any]:
    response = await admin.client.put(f"/notifications/rules/{name}", json=rule, headers=ADMIN)
    assert response.status_code in (200, 201), response.text
    shown: dict[str, Any] = response.json()["rule"]
    return shown


async def events_of(admin: FullAdmin, kind: str) -> list[Any]:
    streams = frozenset({Stream.RUNS, Stream.SCHEDULES})
    found = await admin.runtime.events.since(
        0, EventFilter(streams=streams, types=frozenset({kind})), 1000
    )
    return list(found)


async def test_failures_streaks_and_recovery_are_told_once_each_signed(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    receiver = Receiver.reserve().start()
    try:
        async with notifying_admin(backend, queue_location, tmp_path) as admin:
            assert (await admin.client.get("/metrics", headers=VIEWER)).status_code == 200
            common = {"scope": "job", "target": "flaky", "channel": "webhook", "secret": SECRET}
            shown = await save_rule(
                admin, "on-failure", events=["failed"], url=receiver.url("/failed"), **common
            )
            assert shown["secretSet"] is True
            assert SECRET not in str(shown)
            await save_rule(
                admin,
                "third-in-a-row",
                events=["failed_in_a_row"],
                failuresInARow=3,
                url=receiver.url("/streak"),
                **common,
            )
            await save_rule(
                admin, "recovery", events=["recovered"], url=receiver.url("/recovered"), **common
            )
            async with working(admin):
                await run_job(admin, "ok")
                assert receiver.received == []  # a success is told to nobody

                await run_job(admin, "fail")
                [failed] = receiver.at("/failed")
                assert failed.signed_by(SECRET)
                assert not failed.signed_by("another-secret")
                body = failed.json()
                assert (body["event"], body["rule"]) == ("failed", "on-failure")
                assert body["subject"]["job"] == "flaky"
                assert body["subject"]["status"] == "failed"
                assert body["subject"]["exitCode"] == 3
                assert failed.headers["x-longshore-event"] == "failed"
                assert receiver.at("/streak") == []

                await run_job(admin, "fail")
                assert receiver.at("/streak") == []
                await run_job(admin, "fail")
                [streak] = receiver.at("/streak")
                assert streak.signed_by(SECRET)
                assert streak.json()["subject"]["failuresInARow"] == 3
                await run_job(admin, "fail")
                assert len(receiver.at("/streak")) == 1  # once per streak, not on the 4th
                assert len(receiver.at("/failed")) == 4
                assert receiver.at("/recovered") == []

                await run_job(admin, "ok")
                [recovered] = receiver.at("/recovered")
                assert recovered.signed_by(SECRET)
                assert recovered.json()["event"] == "recovered"
                assert len(receiver.at("/failed")) == 4
                assert len(receiver.at("/streak")) == 1

            delivered = await events_of(admin, "NotificationDelivered")
            assert len(delivered) == 6
            assert all(event.key == "flaky" for event in delivered)
            metrics = await admin.client.get("/metrics/prometheus", headers=VIEWER)
            assert 'longshore_notifications_total{outcome="delivered"} 6.0' in metrics.text
            # The secret is in no response, event or audit entry.
            listed = await admin.client.get("/notifications/rules", headers=VIEWER)
            assert SECRET not in listed.text
            assert all(SECRET not in str(event.data) for event in delivered)
            assert SECRET not in str(await admin.audit_entries(limit=100))
    finally:
        receiver.stop()


@only_embedded
async def test_a_receiver_that_is_down_gets_the_delivery_later_and_a_dead_one_ends_in_the_dlq(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    later = Receiver.reserve()  # nothing listens yet
    broken = Receiver.reserve().start()
    broken.answers["/hook"] = 302  # a redirect is a failure: never followed
    broken.answers["/hang"] = 0  # answers only after the rule's timeout
    try:
        async with notifying_admin(backend, queue_location, tmp_path, notify_attempts=3) as admin:
            assert (await admin.client.get("/metrics", headers=VIEWER)).status_code == 200
            common = {"scope": "job", "target": "flaky", "events": ["failed"], "secret": SECRET}
            await save_rule(admin, "later", channel="webhook", url=later.url("/hook"), **common)
            await save_rule(
                admin,
                "broken-chat",
                channel="chat",
                template="{job} {event}: {status}",
                url=broken.url("/hook"),
                **common,
            )
            await save_rule(
                admin,
                "hanging",
                channel="webhook",
                timeoutSeconds=0.3,
                url=broken.url("/hang"),
                **common,
            )
            async with working(admin):
                job = (await admin.client.get("/jobs/flaky", headers=VIEWER)).json()["job"]
                job.update(env=["MODE=down"])
                await admin.client.post("/jobs", json=_definition(job), headers=ADMIN)
                await admin.client.post("/jobs/flaky/run", headers=OPERATOR)

                async def failed_once() -> bool:
                    return bool(await events_of(admin, "NotificationFailed"))

                await until(failed_once, "a failed delivery")
                later.start()
                await until(lambda: len(later.at("/hook")) == 1, "the delivery, retried")
                assert later.at("/hook")[0].signed_by(SECRET)
                await until(lambda: queue_idle(admin), "the dead delivery")

            assert len(later.at("/hook")) == 1
            assert len(broken.at("/hook")) == 3  # every attempt, then dead-lettered
            assert broken.at("/elsewhere") == []
            assert broken.at("/hook")[0].json() == {"text": "flaky failed: failed"}
            dead = {
                event.data["rule"]: event.data["error"]
                for event in await events_of(admin, "NotificationDeadLettered")
            }
            assert set(dead) == {"broken-chat", "hanging"}
            assert "HTTP 302" in dead["broken-chat"]
            assert "TimeoutError" in dead["hanging"]
            assert len(broken.at("/hang")) == 3
            dlq = await admin.client.get("/dlq", headers=VIEWER)
            entries = [e for e in dlq.json()["entries"] if e["handler"] == "notify.deliver"]
            assert len(entries) == 2
            assert SECRET not in dlq.text
            metrics = (await admin.client.get("/metrics/prometheus", headers=VIEWER)).text
            assert 'longshore_notifications_total{outcome="dead_lettered"} 2.0' in metrics
            assert 'longshore_notifications_total{outcome="delivered"} 1.0' in metrics
    finally:
        later.stop()
        broken.stop()


@only_embedded
async def test_a_schedule_whose_runs_keep_failing_is_failing_and_its_own_rule_is_told(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    receiver = Receiver.reserve().start()
    try:
        async with notifying_admin(backend, queue_location, tmp_path) as admin:
            await admin.client.get("/metrics", headers=VIEWER)
            schedule = {"name": "yearly", "spec": "0 0 1 1 *", "factory": "flaky"}
            response = await admin.client.post("/schedules", json=schedule, headers=ADMIN)
            assert response.status_code == 201, response.text
            common = {"channel": "webhook", "secret": SECRET, "events": ["failed"]}
            await save_rule(admin, "default", scope="global", url=receiver.url("/global"), **common)
            await save_rule(
                admin,
                "yearly-only",
                scope="schedule",
                target="yearly",
                url=receiver.url("/yearly"),
                **common,
            )
            async with working(admin):
                await run_job(admin, "ok", schedule="yearly")
                shown = (await admin.client.get("/schedules/yearly", headers=VIEWER)).json()
                assert shown["schedule"]["failing"] is False
                assert shown["schedule"]["lastSuccessAtMs"] > 0
                await run_job(admin, "fail", schedule="yearly")
                await run_job(admin, "fail", schedule="yearly")
                await run_job(admin, "fail")  # not the schedule's: the job has no own rule

            listed = (await admin.client.get("/schedules", headers=VIEWER)).json()
            [item] = listed["schedules"]
            assert item["failing"] is True
            assert item["failuresInARow"] == 2
            assert item["status"] == "healthy"  # seed 003's vocabulary is unchanged
            assert len(receiver.at("/yearly")) == 2  # the schedule's own rule
            assert len(receiver.at("/global")) == 1  # the default, for the API run only
            metrics = (await admin.client.get("/metrics/prometheus", headers=VIEWER)).text
            assert 'longshore_schedule_last_success_timestamp{schedule="yearly"}' in metrics
    finally:
        receiver.stop()


@only_embedded
async def test_a_slow_run_is_warned_of_while_it_runs_and_once(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    receiver = Receiver.reserve().start()
    try:
        async with notifying_admin(backend, queue_location, tmp_path) as admin:
            await save_rule(
                admin,
                "slow-runs",
                scope="job",
                target="flaky",
                events=["slow"],
                warnAfterSeconds=1,
                channel="chat",
                template="{job} is slow ({status})",
                url=receiver.url("/slow"),
            )
            job = (await admin.client.get("/jobs/flaky", headers=VIEWER)).json()["job"]
            job.update(env=["MODE=slow"])
            await admin.client.post("/jobs", json=_definition(job), headers=ADMIN)
            async with working(admin):
                started = (await admin.client.post("/jobs/flaky/run", headers=OPERATOR)).json()
                await until(lambda: len(receiver.at("/slow")) == 1, "the slow warning")
                run = await admin.runtime.stores.runs.get(started["runId"])
                assert run is not None
                assert run.status is RunStatus.RUNNING  # a warning: the run goes on
                assert receiver.at("/slow")[0].json() == {"text": "flaky is slow (running)"}

                async def finished() -> bool:
                    found = await admin.runtime.stores.runs.get(started["runId"])
                    return found is not None and found.status is RunStatus.SUCCEEDED

                await until(finished, "the slow run to succeed")
                await until(lambda: queue_idle(admin), "the queue")
            assert len(receiver.at("/slow")) == 1  # its end does not tell it again
    finally:
        receiver.stop()


@only_embedded
async def test_retries_exhausted_is_told_once_after_the_last_attempt(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    receiver = Receiver.reserve().start()
    try:
        async with notifying_admin(backend, queue_location, tmp_path) as admin:
            job = (await admin.client.get("/jobs/flaky", headers=VIEWER)).json()["job"]
            definition = {**_definition(job), "env": ["MODE=fail"], "retries": 1}
            assert (await admin.client.post("/jobs", json=definition, headers=ADMIN)).is_success
            common = {"scope": "job", "target": "flaky", "channel": "webhook", "secret": SECRET}
            await save_rule(
                admin, "last", events=["retries_exhausted"], url=receiver.url("/last"), **common
            )
            await save_rule(admin, "each", events=["failed"], url=receiver.url("/each"), **common)
            async with working(admin):
                started = (await admin.client.post("/jobs/flaky/run", headers=OPERATOR)).json()
                queue = admin.runtime.stores.queue

                async def dead() -> bool:
                    task = await queue.get_task(int(started["taskId"]))
                    return task is not None and task.state is TaskState.DEAD

                await until(dead, "the job's task to be dead-lettered", timeout=90)

                async def both_told() -> bool:
                    # The run's notifications are enqueued after its task's verdict is
                    # written: the task may be dead before the last one is even queued.
                    return len(receiver.at("/each")) >= 2 and len(receiver.at("/last")) >= 1

                await until(both_told, "the notifications of both attempts")
                await until(lambda: queue_idle(admin), "the notifications")
            assert [note.json()["subject"]["attempt"] for note in receiver.at("/each")] == [1, 2]
            [last] = receiver.at("/last")
            assert last.signed_by(SECRET)
            assert (last.json()["event"], last.json()["subject"]["attempt"]) == (
                "retries_exhausted",
                2,
            )
    finally:
        receiver.stop()


async def test_a_secret_sealed_with_another_key_dead_letters_the_delivery_with_a_clear_error(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    receiver = Receiver.reserve().start()
    try:
        async with notifying_admin(backend, queue_location, tmp_path) as admin:
            # A process with another secrets key saves the rule (as after a key file was lost
            # or a database restored beside another key).
            foreign = admin.runtime.settings.model_copy(
                update={"secrets_key_file": tmp_path / "other-key" / "secrets.key"}
            )
            async with open_store(foreign, migrate=False) as stores:
                rule = NotificationRule(
                    name="signed",
                    scope=RuleScope.JOB,
                    target="flaky",
                    events=(RuleEvent.FAILED,),
                    channel=Channel.WEBHOOK,
                    url=receiver.url("/hook"),
                    secret=SECRET,
                )
                await stores.notifications.upsert(rule)
            async with working(admin):
                await run_job(admin, "fail")
            assert receiver.received == []  # nothing is sent unsigned
            [dead] = await events_of(admin, "NotificationDeadLettered")
            assert dead.data["rule"] == "signed"
            assert dead.data["attempt"] == 1  # at once: retrying with the same key cannot help
            assert "does not decrypt with the secrets key" in dead.data["error"]
            assert "WORKER_SECRETS_KEY_FILE" in dead.data["error"]
            dlq = await admin.client.get("/dlq", headers=VIEWER)
            assert [e["handler"] for e in dlq.json()["entries"]].count("notify.deliver") == 1
            assert SECRET not in dlq.text + str(dead.data)
            metrics = (await admin.client.get("/metrics/prometheus", headers=VIEWER)).text
            assert 'longshore_notifications_total{outcome="dead_lettered"} 1.0' in metrics

            # Setting the secret again (sealed with this key) signs the next delivery.
            await save_rule(
                admin,
                "signed",
                scope="job",
                target="flaky",
                events=["failed"],
                channel="webhook",
                url=receiver.url("/hook"),
                secret=SECRET,
            )
            async with working(admin):
                await run_job(admin, "fail")
            [delivered] = receiver.at("/hook")
            assert delivered.signed_by(SECRET)
    finally:
        receiver.stop()

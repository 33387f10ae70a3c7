"""The ``jobs`` routes of the admin API over a whole runtime (SQLite and PostgreSQL): define,
list, read, replace and delete job definitions, validated when saved; run now; the job
event log; and the source artifact of a real run on Docker, downloaded whole and by range."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobrunner.run_events import run_event_data
from service.runtime import build_registry
from service.worker import Worker, WorkerOptions
from store.events import NewEvent, Stream
from store.jobs.models import RunStatus
from store.queue.models import TaskState
from tests.integration.admin_harness import (
    ADMIN,
    APPROVAL,
    OPERATOR,
    VIEWER,
    FullAdmin,
    full_admin,
)
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image

REPO = "https://git.example.com/team/jobs.git"
SHA = "ab" * 32


def settings(tmp_path: Path) -> dict[str, Any]:
    tarballs = tmp_path / "tarballs"
    tarballs.mkdir(exist_ok=True)
    return {
        "job_tarball_dir": tarballs,
        "job_repo_allowlist": ("https://git.example.com/team/",),
        "job_tarball_allowlist": ("downloads.example.com",),
    }


def git_job(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "source": "git_tag", "repo": REPO, "tag": "v1.2.3", **fields}


def assert_envelope(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["requestId"] == response.headers["x-request-id"]
    message: str = body["error"]["message"]
    return message


# --- definitions --------------------------------------------------------------------------


async def test_jobs_are_created_listed_by_page_read_replaced_and_deleted(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path, settings=settings(tmp_path)) as admin:
        client = admin.client
        full = git_job(
            "nightly-report",
            description="the nightly report",
            path="reports",
            dockerfile="build/Dockerfile",
            command=["python", "-m", "report"],
            env=["MODE=full", "EMPTY="],
            queue="reports",
            retries=2,
            timeoutSeconds=900,
            resources={"memoryMb": 256, "cpus": 0.5, "pidsLimit": 64},
            artifactsPath="/out",
            outputBytes=4096,
            onOutputLimit="fail",
            user="1000:1000",
        )
        response = await client.post("/jobs", json=full, headers=ADMIN)
        assert response.status_code == 201, response.text
        job = response.json()["job"]
        assert job == {
            "name": "nightly-report",
            "description": "the nightly report",
            "source": "git_tag",
            "repo": REPO,
            "tag": "v1.2.3",
            "tarballUrl": "",
            "tarballPath": "",
            "tarballSha256": "",
            "path": "reports",
            "dockerfile": "build/Dockerfile",
            "command": ["python", "-m", "report"],
            "env": ["MODE=full", "EMPTY="],
            "queue": "reports",
            "retries": 2,
            "timeoutSeconds": 900,
            "resources": {"memoryMb": 256, "cpus": 0.5, "pidsLimit": 64},
            "network": "none",
            "artifactsPath": "/out",
            "outputBytes": 4096,
            "onOutputLimit": "fail",
            "user": "1000:1000",
            "secrets": [],
            "params": [],
            "revision": 1,
            "createdAt": job["createdAt"],
            "createdAtMs": job["createdAtMs"],
            "updatedAt": job["updatedAt"],
            "updatedAtMs": job["updatedAtMs"],
        }
        assert job["createdAt"].endswith("Z")
        assert job["createdAtMs"] > 0

        # A seed client's body: "" for the fields of other sources, defaults filled in.
        seed = {
            "name": "backup",
            "description": "",
            "source": "tarball_path",
            "repo": "",
            "tag": "",
            "tarballUrl": "",
            "tarballPath": "./backup//job.tar.gz",
            "tarballSha256": SHA.upper(),
            "path": "",
            "dockerfile": "",
            "command": [],
            "env": [],
            "queue": "",
            "retries": 0,
            "timeoutSeconds": 0,
        }
        response = await client.post("/jobs", json=seed, headers=ADMIN)
        assert response.status_code == 201, response.text
        backup = response.json()["job"]
        # Never null for a seed client: unused fields read back as "", 0 means the default.
        assert (backup["repo"], backup["tag"], backup["path"]) == ("", "", "")
        assert backup["timeoutSeconds"] == 600
        assert backup["tarballPath"] == "backup/job.tar.gz"
        assert backup["tarballSha256"] == SHA
        assert (backup["queue"], backup["dockerfile"], backup["network"]) == (
            "default",
            "Dockerfile",
            "none",
        )
        assert backup["resources"] == {"memoryMb": 512, "cpus": 1.0, "pidsLimit": 256}
        response = await client.post("/jobs", json=git_job("cleanup"), headers=ADMIN)
        assert response.status_code == 201

        response = await client.get("/jobs?limit=2", headers=VIEWER)
        assert response.status_code == 200
        page = response.json()
        assert [j["name"] for j in page["jobs"]] == ["backup", "cleanup"]
        assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
        page = (await client.get("/jobs?limit=2&offset=2", headers=VIEWER)).json()
        assert [j["name"] for j in page["jobs"]] == ["nightly-report"]
        assert page["total"] == 3
        assert "limit" in assert_envelope(
            await client.get("/jobs?limit=0", headers=VIEWER), 400, "invalid_request"
        )

        response = await client.get("/jobs/nightly-report", headers=OPERATOR)
        assert response.json() == {"job": job}

        # Saving again replaces every field: what is left out goes back to its default.
        response = await client.post(
            "/jobs", json=git_job("nightly-report", tag="v2.0.0"), headers=ADMIN
        )
        assert response.status_code == 200, response.text
        replaced = response.json()["job"]
        assert (replaced["tag"], replaced["revision"], replaced["command"]) == ("v2.0.0", 2, [])
        assert replaced["createdAt"] == job["createdAt"]
        stored = await admin.runtime.stores.jobs.get("nightly-report")
        assert stored is not None
        assert stored.source_fields["tag"] == "v2.0.0"

        response = await client.delete("/jobs/cleanup", headers=ADMIN)
        assert response.status_code == 200
        assert response.json() == {"deleted": True, "name": "cleanup"}
        assert_envelope(await client.get("/jobs/cleanup", headers=VIEWER), 404, "not_found")
        assert_envelope(await client.delete("/jobs/cleanup", headers=ADMIN), 404, "not_found")

        upserts = await admin.audit_entries(action="job.upsert")
        assert sorted((e.target, e.status.value, e.actor) for e in upserts) == [
            ("backup", "ok", "alice"),
            ("cleanup", "ok", "alice"),
            ("nightly-report", "ok", "alice"),
            ("nightly-report", "ok", "alice"),
        ]
        assert {e.detail for e in upserts if e.target == "nightly-report"} == {
            "created revision=1",
            "updated revision=2",
        }
        deletes = await admin.audit_entries(action="job.delete")
        assert [(e.target, e.status.value) for e in deletes] == [
            ("cleanup", "error"),
            ("cleanup", "ok"),
        ]


async def test_viewers_see_env_names_and_operators_see_values(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path, settings=settings(tmp_path)) as admin:
        client = admin.client
        job = git_job("deploy", env=["SECRET_TOKEN=hunter2-very-secret", "MODE=a=b", "EMPTY="])
        response = await client.post("/jobs", json=job, headers=ADMIN)
        assert response.status_code == 201, response.text
        assert response.json()["job"]["env"] == job["env"]

        masked = ["SECRET_TOKEN=***", "MODE=***", "EMPTY=***"]
        one = await client.get("/jobs/deploy", headers=VIEWER)
        listed = await client.get("/jobs", headers=VIEWER)
        assert one.json()["job"]["env"] == masked
        assert listed.json()["jobs"][0]["env"] == masked
        assert "hunter2" not in one.text + listed.text
        for who in (OPERATOR, ADMIN):
            assert (await client.get("/jobs/deploy", headers=who)).json()["job"]["env"] == job[
                "env"
            ]
            assert (await client.get("/jobs", headers=who)).json()["jobs"][0]["env"] == job["env"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (git_job("Bad Name"), "name"),
        (git_job("-leading-dash"), "name"),
        (git_job("env-bare", env=["OK=1", "HOME"]), "env[1]"),
        (git_job("env-dup", env=["A=1", "A=2"]), "env[1]"),
        (
            {"name": "sha", "source": "tarball_path", "tarballPath": "a.tgz", "tarballSha256": "x"},
            "tarballSha256",
        ),
        (
            {
                "name": "plain-http",
                "source": "tarball_url",
                "tarballUrl": "http://downloads.example.com/a.tgz",
                "tarballSha256": SHA,
            },
            "tarballUrl",
        ),
        (git_job("http-repo", repo="http://git.example.com/team/jobs.git"), "repo"),
        (git_job("other-repo", repo="https://evil.example.com/team/jobs.git"), "repo"),
        (
            {
                "name": "other-host",
                "source": "tarball_url",
                "tarballUrl": "https://evil.example.com/a.tgz",
                "tarballSha256": SHA,
            },
            "tarballUrl",
        ),
        (
            {"name": "escape", "source": "tarball_path", "tarballPath": "../etc/passwd"},
            "tarballPath",
        ),
        ({"name": "abs", "source": "tarball_path", "tarballPath": "/etc/passwd"}, "tarballPath"),
        (git_job("ctx-escape", path="../.."), "path"),
        (git_job("source-mix", tarballPath="a.tgz"), "tarballPath"),
        ({"name": "no-source", "source": "svn"}, "source"),
        (git_job("no-tag", tag=""), "tag"),
        (git_job("net", network="host"), "network"),
        (git_job("cpus", resources={"cpus": 0}), "resources.cpus"),
        (git_job("retries", retries="3"), "retries"),
        (git_job("timeout", timeoutSeconds=-1), "timeoutSeconds"),
        (git_job("long", timeoutSeconds=86_401), "timeoutSeconds"),  # over the server ceiling
        (git_job("memory", resources={"memoryMb": 8193}), "resources.memoryMb"),
        (git_job("pids", resources={"pidsLimit": 4097}), "resources.pidsLimit"),
        (git_job("many-cpus", resources={"cpus": 4.5}), "resources.cpus"),
        (git_job("user", user="root;id"), "user"),
        (git_job("art", artifactsPath="/proc/x"), "artifactsPath"),
        (git_job("limit", onOutputLimit="explode"), "onOutputLimit"),
        (git_job("unknown", colour="blue"), "colour"),
        ({"source": "git_tag", "repo": REPO, "tag": "v1"}, "name"),
    ],
)
async def test_a_bad_definition_is_400_naming_the_field_and_nothing_is_saved(
    backend: str, queue_location: Any, tmp_path: Path, body: dict[str, Any], field: str
) -> None:
    async with full_admin(backend, queue_location, tmp_path, settings=settings(tmp_path)) as admin:
        response = await admin.client.post("/jobs", json=body, headers=ADMIN)
        message = assert_envelope(response, 400, "invalid_request")
        assert message.startswith(field), message
        page = await admin.runtime.stores.jobs.list_jobs(limit=10, offset=0)
        assert page.total == 0
        [entry] = await admin.audit_entries(action="job.upsert")
        assert entry.status.value == "error"
        assert entry.target == str(body.get("name", ""))
        assert entry.detail.startswith("400 invalid_request")


async def test_a_tarball_path_leading_out_through_a_symlink_is_refused_when_saved(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    config = settings(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (config["job_tarball_dir"] / "link").symlink_to(outside)
    async with full_admin(backend, queue_location, tmp_path, settings=config) as admin:
        body = {"name": "sneaky", "source": "tarball_path", "tarballPath": "link/job.tar"}
        response = await admin.client.post("/jobs", json=body, headers=ADMIN)
        assert "tarballPath" in assert_envelope(response, 400, "invalid_request")
        assert await admin.runtime.stores.jobs.get("sneaky") is None


async def test_tarball_paths_are_refused_when_no_tarball_dir_is_configured(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path) as admin:
        body = {"name": "nodir", "source": "tarball_path", "tarballPath": "job.tar"}
        response = await admin.client.post("/jobs", json=body, headers=ADMIN)
        message = assert_envelope(response, 400, "invalid_request")
        assert "WORKER_JOB_TARBALL_DIR" in message


async def test_viewers_and_operators_cannot_define_or_delete_jobs_and_are_audited(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path, settings=settings(tmp_path)) as admin:
        client = admin.client
        for who in (VIEWER, OPERATOR):
            response = await client.post("/jobs", json=git_job("report"), headers=who)
            assert_envelope(response, 403, "forbidden")
        assert await admin.runtime.stores.jobs.get("report") is None
        assert (await client.post("/jobs", json=git_job("report"), headers=ADMIN)).is_success
        assert_envelope(await client.delete("/jobs/report", headers=OPERATOR), 403, "forbidden")
        assert_envelope(await client.post("/jobs/report/run", headers=VIEWER), 403, "forbidden")
        assert await admin.runtime.stores.jobs.get("report") is not None
        refused = [e for e in await admin.audit_entries() if e.status.value == "error"]
        assert sorted((e.actor, e.action, e.target) for e in refused) == [
            ("olga", "job.delete", "report"),
            ("olga", "job.upsert", "report"),
            ("vic", "job.run", "report"),
            ("vic", "job.upsert", "report"),
        ]
        assert all(e.detail.startswith("403 forbidden") for e in refused)
        # Reading needs credentials, nothing more.
        assert_envelope(await client.get("/jobs"), 401, "unauthenticated")


# --- run now and the event log ------------------------------------------------------------


async def test_run_now_queues_a_task_and_a_run_and_shows_in_the_job_events(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path, settings=settings(tmp_path)) as admin:
        client = admin.client
        body = git_job("report", command=["sh", "-c", "echo hi"], queue="reports", retries=2)
        assert (await client.post("/jobs", json=body, headers=ADMIN)).status_code == 201

        # Seed clients post no body at all.
        response = await client.post("/jobs/report/run", headers=OPERATOR)
        assert response.status_code == 200, response.text
        started = response.json()
        assert set(started) == {"taskId", "runId"}
        assert isinstance(started["taskId"], str)
        run = await admin.runtime.stores.runs.get(started["runId"])
        assert run is not None
        assert (run.job, run.status, run.trigger.value, run.actor) == (
            "report",
            RunStatus.QUEUED,
            "api",
            "olga",
        )
        assert run.task_id == int(started["taskId"])
        task = await admin.runtime.stores.queue.get_task(int(started["taskId"]))
        assert task is not None
        assert (task.handler, task.queue, task.state) == ("job.run", "reports", TaskState.READY)
        assert task.payload["runId"] == started["runId"]
        assert task.max_attempts == 3  # retries + 1
        [entry] = await admin.audit_entries(action="job.run")
        assert (entry.target, entry.status.value, entry.actor) == ("report", "ok", "olga")
        assert started["runId"] in entry.detail

        response = await client.get("/jobs/events?name=report&limit=25", headers=VIEWER)
        assert response.status_code == 200
        [event] = response.json()["events"]
        assert (event["job"], event["name"], event["runId"]) == ("report", "report", run.run_id)
        assert event["taskId"] == started["taskId"]
        assert (event["status"], event["runStatus"]) == ("queued", "queued")
        assert event["command"] == "sh -c echo hi"
        assert event["queue"] == "reports"
        assert (event["repo"], event["tag"], event["path"]) == (REPO, "v1.2.3", "")
        assert event["metadata"]["job.source"] == "git_tag"
        assert event["startedAtMs"] > 0
        assert event["startedAt"].endswith("Z")
        # An unfinished run: the finish fields are absent, never 0; the duration unknown.
        assert "finishedAtMs" not in event
        assert "finishedAt" not in event
        assert event["durationMs"] == -1
        assert (event["result"], event["error"], event["exitCode"]) == ("", "", -1)

        assert_envelope(await client.post("/jobs/nope/run", headers=OPERATOR), 404, "not_found")
        no_events = await client.get("/jobs/events?name=nope", headers=VIEWER)
        assert no_events.json() == {"events": []}
        assert "limit" in assert_envelope(
            await client.get("/jobs/events?limit=0", headers=VIEWER), 400, "invalid_request"
        )


async def test_job_events_list_one_item_per_run_in_its_latest_state(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path, settings=settings(tmp_path)) as admin:
        client = admin.client
        assert (await client.post("/jobs", json=git_job("report"), headers=ADMIN)).is_success
        assert (await client.post("/jobs", json=git_job("other"), headers=ADMIN)).is_success
        runs = admin.runtime.stores.runs
        first = (await client.post("/jobs/report/run", headers=OPERATOR)).json()["runId"]
        await (await client.post("/jobs/other/run", headers=OPERATOR)).aread()
        # The run goes through its stages as a worker would record them, with live output.
        events = admin.runtime.events
        for status in (RunStatus.FETCHING, RunStatus.RUNNING):
            await runs.transition(first, status)
        for seq in range(150):
            await events.append(
                NewEvent.run("RunOutputEmitted", job="report", run_id=first, seq=seq, text="x\n")
            )
        done = await runs.transition(first, RunStatus.FAILED, exit_code=3, error="exit 3")
        await events.append(
            NewEvent(
                stream=Stream.RUNS,
                key="report",
                type="RunFailed",
                run_id=first,
                data=run_event_data(done),
            )
        )

        # One item per run, in its latest state: the output events are no items.
        response = await client.get("/jobs/events?name=report&limit=2", headers=VIEWER)
        [failed] = response.json()["events"]
        assert failed["runId"] == first
        assert (failed["status"], failed["exitCode"], failed["error"]) == ("failed", 3, "exit 3")
        assert failed["runStatus"] == "failed"
        assert failed["finishedAtMs"] >= failed["startedAtMs"] > 0
        assert failed["durationMs"] == failed["finishedAtMs"] - failed["startedAtMs"]

        # ``limit`` counts runs, newest first, over every job without a name.
        everything = (await client.get("/jobs/events?limit=10", headers=VIEWER)).json()["events"]
        assert [(e["job"], e["status"]) for e in everything] == [
            ("other", "queued"),
            ("report", "failed"),
        ]
        [newest] = (await client.get("/jobs/events?limit=1", headers=VIEWER)).json()["events"]
        assert newest["job"] == "other"


async def test_run_and_delete_need_approval_when_it_is_required(
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
        # Defining a job is not a risky action: no approval needed.
        assert (
            await client.post("/jobs", json=git_job("report"), headers=ADMIN)
        ).status_code == 201
        for method, path in (("POST", "/jobs/report/run"), ("DELETE", "/jobs/report")):
            response = await client.request(method, path, headers=ADMIN)
            assert_envelope(response, 403, "approval_required")
            wrong = {**ADMIN, "X-Admin-Approval": "nope"}
            assert_envelope(
                await client.request(method, path, headers=wrong), 403, "approval_required"
            )
        assert (
            await admin.runtime.stores.runs.list_runs(job="report", limit=5, offset=0)
        ).total == 0
        assert await admin.runtime.stores.jobs.get("report") is not None

        approved = {**ADMIN, "X-Admin-Approval": APPROVAL}
        assert (await client.post("/jobs/report/run", headers=approved)).status_code == 200
        assert (await client.delete("/jobs/report", headers=approved)).status_code == 200
        entries = await admin.audit_entries(target="report")
        outcomes = sorted((e.action, e.status.value) for e in entries)
        assert outcomes == [
            ("job.delete", "error"),
            ("job.delete", "error"),
            ("job.delete", "ok"),
            ("job.run", "error"),
            ("job.run", "error"),
            ("job.run", "ok"),
            ("job.upsert", "ok"),
        ]


async def test_the_source_artifact_is_404_until_a_run_has_fetched_it(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    async with full_admin(backend, queue_location, tmp_path, settings=settings(tmp_path)) as admin:
        client = admin.client
        assert (await client.post("/jobs", json=git_job("report"), headers=ADMIN)).is_success
        assert (await client.post("/jobs/report/run", headers=OPERATOR)).is_success
        for path in ("/jobs/report/artifact/meta", "/jobs/report/artifact", "/jobs/nope/artifact"):
            message = assert_envelope(await client.get(path, headers=VIEWER), 404, "not_found")
            assert "source artifact" in message


# --- a real run on Docker -----------------------------------------------------------------


def job_tarball(script: str) -> bytes:
    files = {
        "Dockerfile": f'FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n',
        "job.sh": script,
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


async def work_until_settled(admin: FullAdmin, task_id: int, *, timeout: float = 60.0) -> None:
    """Run a real worker over the runtime's queue until the task is done or dead."""
    queue = admin.runtime.stores.queue
    registry = build_registry(admin.runtime.job_runner)
    options = WorkerOptions(concurrency=1, poll_interval=0.1, heartbeat_interval=1.0)
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(queue, registry, options).run(stop))
    try:
        deadline = time.monotonic() + timeout
        while True:
            task = await queue.get_task(task_id)
            if task is None or task.state in (TaskState.DONE, TaskState.DEAD):
                return
            assert time.monotonic() < deadline, "the job run did not finish"
            assert not worker.done(), "the worker stopped"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await worker


@pytest.mark.docker
@pytest.mark.slow
async def test_a_tarball_path_jobs_source_is_downloadable_whole_and_by_range(
    backend: str, queue_location: Any, tmp_path: Path
) -> None:
    ensure_busybox_image(docker_client())
    config = settings(tmp_path)
    data = job_tarball(f"echo source artifact {tmp_path.name}\n")
    sha = hashlib.sha256(data).hexdigest()
    (config["job_tarball_dir"] / "nightly-1.0.tar.gz").write_bytes(data)
    async with full_admin(backend, queue_location, tmp_path, settings=config) as admin:
        client = admin.client
        body = {
            "name": "nightly",
            "source": "tarball_path",
            "tarballPath": "nightly-1.0.tar.gz",
            "tarballSha256": sha,
        }
        assert (await client.post("/jobs", json=body, headers=ADMIN)).status_code == 201
        started = (await client.post("/jobs/nightly/run", headers=OPERATOR)).json()
        await work_until_settled(admin, int(started["taskId"]))
        run = await admin.runtime.stores.runs.get(started["runId"])
        assert run is not None
        assert run.status is RunStatus.SUCCEEDED, run

        response = await client.get("/jobs/nightly/artifact/meta", headers=VIEWER)
        assert response.status_code == 200, response.text
        meta = response.json()["artifact"]
        assert meta["name"] == "nightly-1.0.tar.gz"
        assert (meta["sizeBytes"], meta["sha256"], meta["sourceSha256"]) == (len(data), sha, sha)
        assert (meta["runId"], meta["source"], meta["commitSha"]) == (
            run.run_id,
            "tarball_path",
            None,
        )
        assert meta["contentType"] == "application/gzip"

        response = await client.get("/jobs/nightly/artifact", headers=VIEWER)
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == sha
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["content-type"] == "application/gzip"
        assert response.headers["content-disposition"] == (
            'attachment; filename="nightly-1.0.tar.gz"'
        )
        assert response.headers["accept-ranges"] == "bytes"

        response = await client.get(
            "/jobs/nightly/artifact", headers={**VIEWER, "Range": "bytes=10-99"}
        )
        assert response.status_code == 206
        assert response.content == data[10:100]
        assert response.headers["content-range"] == f"bytes 10-99/{len(data)}"
        response = await client.get(
            "/jobs/nightly/artifact", headers={**VIEWER, "Range": "bytes=-16"}
        )
        assert (response.status_code, response.content) == (206, data[-16:])
        tail = await client.get("/jobs/nightly/artifact", headers={**VIEWER, "Range": "bytes=100-"})
        head = await client.get("/jobs/nightly/artifact", headers={**VIEWER, "Range": "bytes=0-99"})
        assert hashlib.sha256(head.content + tail.content).hexdigest() == sha

        response = await client.get(
            "/jobs/nightly/artifact", headers={**VIEWER, "Range": f"bytes={len(data)}-"}
        )
        assert_envelope(response, 416, "range_not_satisfiable")
        assert response.headers["content-range"] == f"bytes */{len(data)}"

        # A queued run without a source does not hide the one that has it.
        assert (await client.post("/jobs/nightly/run", headers=OPERATOR)).is_success
        meta_again = (await client.get("/jobs/nightly/artifact/meta", headers=VIEWER)).json()
        assert meta_again["artifact"]["runId"] == run.run_id

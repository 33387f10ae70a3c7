"""A seed 003 admin client works unchanged (SPEC §7): every row of
``SEED003-CLIENT.md`` played as that client plays it, over mTLS, against ``longshore
serve``'s runtime on each backend, with real data behind it (:mod:`.world`).

Each test is one row: it sends what the client sends and asserts every field the client
reads — present, of its type, never null, in its vocabulary — and the values real data
gives them. The tests read first and change things last (they share one world per backend).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from service.lifecycle import instance_name
from store.events import Stream
from store.jobs.models import RunTrigger
from store.queue.models import DeadFilter
from tests.contract.seed003.client import (
    AUDIT_STATUSES,
    BOOL,
    INT,
    LIST,
    OBJ,
    RUN_STATUSES,
    SCHEDULE_STATUSES,
    STR,
    check_error_envelope,
    check_fields,
    check_metadata,
)
from tests.contract.seed003.world import HELLO_LINES, World, seed_job

pytestmark = [
    pytest.mark.asyncio(loop_scope="package"),
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.timeout(300),
]

JOB_EVENT = {
    "taskId": STR, "name": STR, "status": STR, "queue": STR, "repo": STR, "tag": STR,
    "path": STR, "dockerfile": STR, "command": STR, "scheduleName": STR, "scheduleSpec": STR,
    "startedAtMs": INT, "durationMs": INT, "result": STR, "error": STR, "metadata": OBJ,
}  # fmt: skip
SCHEDULE_EVENT = {
    "taskId": STR, "name": STR, "spec": STR, "durable": BOOL, "status": STR, "queue": STR,
    "startedAtMs": INT, "durationMs": INT, "result": STR, "error": STR, "metadata": OBJ,
}  # fmt: skip
SCHEDULE = {
    "name": STR, "schedule": STR, "nextRun": STR, "lastRun": STR, "nextRunMs": INT,
    "lastRunMs": INT, "status": STR, "paused": BOOL, "durable": BOOL,
}  # fmt: skip
JOB = {
    "name": STR, "description": STR, "repo": STR, "tag": STR, "source": STR, "tarballUrl": STR,
    "tarballPath": STR, "tarballSha256": STR, "path": STR, "dockerfile": STR, "command": LIST,
    "env": LIST, "queue": STR, "retries": INT, "timeoutSeconds": INT, "updatedAtMs": INT,
}  # fmt: skip
QUEUE = {"name": STR, "ready": INT, "processing": INT, "dead": INT, "weight": INT, "paused": BOOL}
DEAD = {"id": STR, "queue": STR, "handler": STR, "attempts": INT, "ageMs": INT}
DEAD_DETAIL = {
    **DEAD, "failedAtMs": INT, "updatedAtMs": INT, "lastError": STR, "payloadSize": INT,
    "metadata": OBJ,
}  # fmt: skip
AUDIT = {
    "atMs": INT, "actor": STR, "requestId": STR, "action": STR, "target": STR, "status": STR,
    "detail": STR,
}  # fmt: skip
HELLO_OUTPUT = "".join(f"{line}\n" for line in HELLO_LINES)


def check_job_event(item: dict[str, Any]) -> None:
    where = f"job event {item.get('taskId')}"
    check_fields(item, JOB_EVENT, where)
    check_metadata(item, where)
    assert item["status"] in RUN_STATUSES, f"{where}: status {item['status']!r}"
    _check_finish(item, where)


def check_schedule_event(item: dict[str, Any]) -> None:
    where = f"schedule event {item.get('taskId')}"
    check_fields(item, SCHEDULE_EVENT, where)
    check_metadata(item, where)
    assert item["status"] in RUN_STATUSES, f"{where}: status {item['status']!r}"
    _check_finish(item, where)


def _check_finish(item: dict[str, Any], where: str) -> None:
    """``finishedAtMs`` is absent for anything unfinished, a number otherwise."""
    unfinished = item["status"] in ("queued", "running")
    assert ("finishedAtMs" in item) is not unfinished, where
    if not unfinished:
        check_fields(item, {"finishedAtMs": INT}, where)
        assert item["durationMs"] == item["finishedAtMs"] - item["startedAtMs"] >= 0, where


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- overview and health ----------------------------------------------------------------


async def test_overview(world: World) -> None:
    body = await world.client.ok("GET", "/overview")
    stats, coordination, actions = body["stats"], body["coordination"], body["actions"]
    check_fields(
        stats,
        {
            "activeWorkers": INT, "queuedTasks": INT, "queues": INT, "avgLatencyMs": INT,
            "p95LatencyMs": INT,
        },
        "stats",
    )  # fmt: skip
    check_fields(
        coordination,
        {"globalRateLimit": STR, "leaderLock": STR, "lease": STR, "paused": BOOL},
        "coordination",
    )
    check_fields(actions, {"pause": INT, "resume": INT, "replay": INT}, "actions")
    # Real queue-to-start waits of the runs asked for through the API, not a made-up 0.
    page = await world.runtime.stores.runs.list_runs(limit=200, offset=0)
    waits = sorted(
        ms(run.fetching_at) - ms(run.queued_at)
        for run in page.items
        if run.trigger is RunTrigger.API and run.fetching_at is not None
    )
    assert len(waits) == 3
    assert waits[-1] > 0
    assert abs(stats["avgLatencyMs"] - sum(waits) / len(waits)) <= 2
    assert abs(stats["p95LatencyMs"] - waits[-1]) <= 2
    # The scheduler leader is named (this runtime's scheduler leads).
    assert world.runtime.scheduler is not None
    assert world.runtime.scheduler.is_leader
    assert coordination["leaderLock"] == instance_name()
    assert coordination["paused"] is False


async def test_health(world: World) -> None:
    body = await world.client.ok("GET", "/health")
    check_fields(
        body,
        {"status": STR, "version": STR, "commit": STR, "buildTime": STR, "goVersion": STR},
        "health",
    )
    assert body["status"] == "ok"
    # The tests run from a checkout: the commit is its HEAD; the build time a moment.
    root = Path(__file__).resolve().parents[3]
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    )
    assert body["commit"] == head.stdout.strip()
    assert body["commit"] != ""
    assert datetime.fromisoformat(body["buildTime"]).tzinfo is not None
    assert body["goVersion"] == f"python {platform.python_version()}"


# --- queues -----------------------------------------------------------------------------


async def test_queues_and_one_queue(world: World) -> None:
    body = await world.client.ok("GET", "/queues")
    for item in body["queues"]:
        check_fields(item, QUEUE, f"queue {item.get('name')}")
    [default] = [q for q in body["queues"] if q["name"] == "default"]
    assert default["dead"] == 2  # sleepy and refused
    one = await world.client.ok("GET", "/queues/default")
    check_fields(one["queue"], QUEUE, "queue default")
    assert one["queue"]["dead"] == 2


# --- schedules --------------------------------------------------------------------------


async def _last_fired(world: World, name: str) -> int:
    events = await world.runtime.events.latest(Stream.SCHEDULES, name, 100)
    return next(e.at_ms for e in events if e.type == "ScheduleFired")


async def test_schedules_list_their_last_real_firing_and_are_durable(world: World) -> None:
    body = await world.client.ok("GET", "/schedules")
    listed = {item["name"]: item for item in body["schedules"]}
    for name, item in listed.items():
        check_fields(item, SCHEDULE, f"schedule {name}")
        assert item["status"] in SCHEDULE_STATUSES
        assert item["paused"] is (item["status"] == "paused")
        assert item["durable"] is True  # every schedule is persisted ("hello" sent false)
    hello, ticker = listed["hello"], listed["ticker"]
    assert hello["schedule"] == "0 0 1 1 *"
    # The last real firing (hello's run-now), not the spec's previous tick (1 January).
    assert hello["lastRunMs"] == await _last_fired(world, "hello")
    assert hello["lastRunMs"] == ms(datetime.fromisoformat(hello["lastRun"]))
    assert hello["nextRun"] != ""
    assert hello["nextRunMs"] > hello["lastRunMs"]
    assert ticker["lastRunMs"] == await _last_fired(world, "ticker")
    assert (ticker["status"], ticker["paused"], ticker["nextRun"], ticker["nextRunMs"]) == (
        "paused",
        True,
        "",
        0,
    )


async def test_schedule_factories(world: World) -> None:
    body = await world.client.ok("GET", "/schedules/factories")
    for item in body["factories"]:
        check_fields(item, {"name": STR, "durable": BOOL}, f"factory {item.get('name')}")
        assert item["durable"] is True
    assert {"hello", "sleepy", "refused", "builtin.noop"} <= {f["name"] for f in body["factories"]}


async def test_schedule_events_without_a_name_list_every_schedules_firings(world: World) -> None:
    response = await world.client.get("/schedules/events")
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    for item in events:
        check_schedule_event(item)
    assert len({item["taskId"] for item in events}) == len(events)  # items keyed by taskId
    by_task = {item["taskId"]: item for item in events}

    hello = by_task[world.scheduled_task]
    assert (hello["name"], hello["spec"], hello["durable"]) == ("hello", "0 0 1 1 *", True)
    assert (hello["status"], hello["queue"], hello["error"]) == ("completed", "default", "")
    assert hello["result"] == HELLO_OUTPUT[-240:]
    assert hello["finishedAtMs"] >= hello["startedAtMs"] > 0

    ticks = [item for item in events if item["name"] == "ticker"]
    fired = [item for item in ticks if item["type"] == "ScheduleFired"]
    skipped = [item for item in ticks if item["type"] == "ScheduleSkipped"]
    assert fired
    assert skipped
    assert {item["status"] for item in fired} == {"completed"}
    assert all((item["spec"], item["queue"]) == ("@every 1s", "default") for item in fired)
    for item in skipped:
        assert item["status"] == "cancelled"
        assert "overlap" in item["error"]

    named = await world.client.ok("GET", "/schedules/events?name=hello&limit=25")
    assert [item["taskId"] for item in named["events"]] == [world.scheduled_task]
    assert named["events"][0] == hello
    limited = await world.client.ok("GET", "/schedules/events?limit=1")
    assert limited["events"] == events[:1]


# --- jobs -------------------------------------------------------------------------------


async def test_jobs_list_and_one_job(world: World) -> None:
    body = await world.client.ok("GET", "/jobs")
    jobs = {item["name"]: item for item in body["jobs"]}
    assert set(jobs) == {"hello", "sleepy", "refused"}
    for name, item in jobs.items():
        check_fields(item, JOB, f"job {name}")
        assert all(isinstance(part, str) for part in item["command"] + item["env"])
    hello = jobs["hello"]
    assert hello["timeoutSeconds"] == 600  # the form sent 0: the default
    assert (hello["repo"], hello["tag"], hello["tarballUrl"], hello["path"]) == ("", "", "", "")
    assert (hello["tarballSha256"], hello["command"]) == (world.hello_sha256, ["sh", "/job.sh"])
    assert jobs["sleepy"]["timeoutSeconds"] == 1
    one = await world.client.ok("GET", "/jobs/hello")
    assert one["job"] == hello


async def test_job_events_are_one_item_per_run_in_its_latest_state(world: World) -> None:
    body = await world.client.ok("GET", "/jobs/events?name=hello&limit=25")
    events = body["events"]
    for item in events:
        check_job_event(item)
    # Two runs (the API's and the schedule's): two items, not one per transition.
    assert len(events) == 2
    by_task = {item["taskId"]: item for item in events}
    api = by_task[world.started["hello"]["taskId"]]
    scheduled = by_task[world.scheduled_task]
    for item in (api, scheduled):
        assert (item["name"], item["status"], item["queue"]) == ("hello", "completed", "default")
        assert (item["command"], item["dockerfile"], item["path"]) == (
            "sh /job.sh",
            "Dockerfile",
            "",
        )
        assert item["result"] == HELLO_OUTPUT[-240:]  # the tail of the output
        assert item["metadata"]["job.source"] == "tarball_path"
        assert item["metadata"]["job.tarball_path"] == "hello.tar.gz"
        assert item["metadata"]["job.tarball_url"] == ""
        assert item["error"] == ""
    assert (api["scheduleName"], api["scheduleSpec"]) == ("", "")
    assert (scheduled["scheduleName"], scheduled["scheduleSpec"]) == ("hello", "0 0 1 1 *")
    output = await world.client.get(f"/runs/{api['runId']}/output")
    assert output.text == HELLO_OUTPUT


async def test_job_events_speak_the_seed_vocabulary(world: World) -> None:
    sleepy = (await world.client.ok("GET", "/jobs/events?name=sleepy&limit=25"))["events"]
    refused = (await world.client.ok("GET", "/jobs/events?name=refused&limit=25"))["events"]
    [timed_out], [invalid] = sleepy, refused
    check_job_event(timed_out)
    check_job_event(invalid)
    assert timed_out["status"] == "deadline"
    assert invalid["status"] == "invalid"
    assert invalid["error"].startswith("ChecksumMismatch")
    assert (invalid["result"], invalid["durationMs"] >= 0) == ("", True)

    # ``limit`` counts runs: every run once, newest first, over every job.
    everything = (await world.client.ok("GET", "/jobs/events?limit=200"))["events"]
    page = await world.runtime.stores.runs.list_runs(limit=200, offset=0)
    assert [item["runId"] for item in everything] == [run.run_id for run in page.items]
    assert len(everything) == 4
    assert {item["status"] for item in everything} == {"completed", "deadline", "invalid"}


async def test_artifact_meta_and_download(world: World) -> None:
    body = await world.client.ok("GET", "/jobs/hello/artifact/meta")
    artifact = body["artifact"]
    check_fields(
        artifact,
        {"downloadable": BOOL, "filename": STR, "sha256": STR, "sizeBytes": INT},
        "artifact",
    )
    assert artifact["downloadable"] is True
    assert artifact["filename"] == "hello.tar.gz"
    assert artifact["sha256"] == world.hello_sha256
    assert "redirectUrl" not in artifact
    response = await world.client.get("/jobs/hello/artifact")
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == world.hello_sha256
    assert int(response.headers["content-length"]) == artifact["sizeBytes"]
    assert response.headers["content-type"] == "application/gzip"
    assert 'filename="hello.tar.gz"' in response.headers["content-disposition"]
    assert response.headers["x-tarball-sha256"] == world.hello_sha256


# --- dead letters -----------------------------------------------------------------------


async def test_dead_letters_list_and_detail(world: World) -> None:
    body = await world.client.ok("GET", "/dlq")
    check_fields(body, {"total": INT}, "dlq")
    assert body["total"] == 2
    dead_ids = {world.started["sleepy"]["taskId"], world.started["refused"]["taskId"]}
    assert {entry["id"] for entry in body["entries"]} == dead_ids
    for entry in body["entries"]:
        check_fields(entry, DEAD, f"dead {entry.get('id')}")
        assert entry["ageMs"] >= 0
    filtered = await world.client.ok("GET", "/dlq?limit=100&offset=0&queue=default&handler=job.run")
    assert filtered["total"] == 2
    for task_id in dead_ids:
        detail = (await world.client.ok("GET", f"/dlq/{task_id}"))["entry"]
        check_fields(detail, DEAD_DETAIL, f"dead {task_id}")
        check_metadata(detail, f"dead {task_id}")
        assert detail["lastError"] != ""
        assert 0 < detail["failedAtMs"] <= detail["failedAtMs"] + detail["ageMs"]


# --- audit ------------------------------------------------------------------------------


async def test_audit_list(world: World) -> None:
    body = await world.client.ok("GET", "/audit?limit=100")
    assert body["events"]
    for item in body["events"]:
        check_fields(item, AUDIT, f"audit {item.get('action')}")
        assert item["status"] in AUDIT_STATUSES
        assert item["actor"] == "seed-ui"  # the client certificate's CN
    runs = await world.client.ok("GET", "/audit?limit=100&action=job.run&target=hello")
    assert [(e["action"], e["target"]) for e in runs["events"]] == [("job.run", "hello")]


async def test_audit_export_holds_the_newest_entries(world: World) -> None:
    listed = (await world.client.ok("GET", "/audit?limit=3"))["events"]
    newest = [entry["requestId"] for entry in reversed(listed)]
    for fmt, media in (("jsonl", "application/x-ndjson"), ("json", "application/json")):
        response = await world.client.get("/audit/export", format=fmt, limit=3)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media)
        assert response.headers["content-disposition"].startswith("attachment; filename=")
        text = response.text
        rows = json.loads(text) if fmt == "json" else [json.loads(x) for x in text.splitlines()]
        assert [row["requestId"] for row in rows] == newest
    response = await world.client.get("/audit/export", format="csv", limit=3)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text, newline="")))[1:]
    assert [row[2] for row in rows] == newest


# --- the live stream --------------------------------------------------------------------


async def _snapshots(world: World) -> dict[str, Any]:
    """The snapshot events a client receives when it connects to ``/events``."""
    wanted = {"job_events", "schedule_events", "audit_events"}
    found: dict[str, Any] = {}
    headers = {"X-Request-Id": "5b1c1f8e-6a4e-4a55-9a57-1f5e3c0d2b10"}
    async with world.client.http.stream("GET", "/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["x-request-id"] == headers["X-Request-Id"]
        buffer = ""
        async for text in response.aiter_text():
            buffer += text
            *blocks, buffer = buffer.split("\n\n")
            for block in blocks:
                lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
                if lines.get("event") in wanted:
                    found[lines["event"]] = json.loads(lines["data"])
            if wanted <= found.keys():
                return found
    raise AssertionError(f"the stream ended before its snapshots: {sorted(found)}")


async def test_stream_snapshots_carry_the_items_of_the_routes(world: World) -> None:
    snapshots = await _snapshots(world)
    jobs = (await world.client.ok("GET", "/jobs/events?limit=25"))["events"]
    schedules = (await world.client.ok("GET", "/schedules/events?limit=25"))["events"]
    audit = (await world.client.ok("GET", "/audit?limit=25"))["events"]
    for name, rest in (
        ("job_events", jobs),
        ("schedule_events", schedules),
        ("audit_events", audit),
    ):
        streamed = snapshots[name]["events"]
        assert streamed, name
        assert streamed == rest, f"{name}: the stream's items differ from the route's"
    for item in snapshots["job_events"]["events"]:
        check_job_event(item)  # queue, command, repo, tag, path, dockerfile included
    for item in snapshots["schedule_events"]["events"]:
        check_schedule_event(item)


# --- actions (these change the world: they come last) -----------------------------------


async def test_pause_and_resume_dequeue_with_no_body(world: World) -> None:
    paused = await world.client.ok("ACTION", "/pause")
    check_fields(paused, {"paused": BOOL}, "pause")
    assert paused["paused"] is True
    resumed = await world.client.ok("ACTION", "/resume")
    assert resumed["paused"] is False


async def test_queue_weight_and_pause(world: World) -> None:
    client = world.client
    await client.ok("POST", "/queues/seed-q/weight", {"weight": 3})  # creates the queue
    queue = (await client.ok("GET", "/queues/seed-q"))["queue"]
    check_fields(queue, QUEUE, "queue seed-q")
    assert queue["weight"] == 3
    paused = await client.ok("POST", "/queues/seed-q/pause", {"paused": True})
    assert paused["queue"]["paused"] is True
    resumed = await client.ok("POST", "/queues/seed-q/pause", {"paused": False})
    assert resumed["queue"]["paused"] is False
    await client.ok("DELETE", "/queues/seed-q/weight")


async def test_schedule_create_edit_pause_delete(world: World) -> None:
    client = world.client
    body = {"name": "builtin.noop", "spec": "0 0 1 1 *", "durable": False}
    await client.ok("POST", "/schedules", body)
    created = (await client.ok("GET", "/schedules/builtin.noop"))["schedule"]
    check_fields(created, SCHEDULE, "schedule builtin.noop")
    # Never fired: no last run (the spec's previous tick is not one).
    assert (created["lastRun"], created["lastRunMs"], created["durable"]) == ("", 0, True)
    await client.ok("POST", "/schedules", {**body, "spec": "0 0 2 1 *"})  # edit
    edited = (await client.ok("GET", "/schedules/builtin.noop"))["schedule"]
    assert edited["schedule"] == "0 0 2 1 *"
    await client.ok("POST", "/schedules/builtin.noop/pause", {"paused": True})
    await client.ok("DELETE", "/schedules/builtin.noop")


async def test_a_skipped_run_now_is_a_conflict_saying_why(world: World) -> None:
    client = world.client
    guard = {"name": "guard", "spec": "0 0 1 1 *", "factory": "builtin.noop"}
    await client.ok("POST", "/schedules", {**guard, "overlapPolicy": "forbid"})
    first = await client.ok("ACTION", "/schedules/guard/run")
    check_fields(first, {"taskId": STR}, "run-now")
    response = await client.action("/schedules/guard/run")  # the first task still waits
    message = check_error_envelope(response, 409, "schedule_run_skipped")
    assert "overlap" in message
    assert first["taskId"] in message
    await client.ok("DELETE", "/schedules/guard")
    await world.runtime.stores.queue.cancel(int(first["taskId"]))


async def test_pause_all_and_resume_all_leave_each_schedule_as_listed(world: World) -> None:
    client = world.client

    async def listed() -> dict[str, tuple[bool, str]]:
        body = await client.ok("GET", "/schedules")
        return {s["name"]: (s["paused"], s["status"]) for s in body["schedules"]}

    before = await listed()
    paused = await client.ok("POST", "/schedules/pause", {"paused": True})
    check_fields(paused, {"updated": INT, "paused": BOOL}, "pause all")
    assert paused == {"paused": True, "updated": sum(not p for p, _ in before.values())}
    assert set((await listed()).values()) == {(True, "paused")}

    # One resumed after pause-all runs again; the others stay paused.
    await client.ok("POST", "/schedules/hello/pause", {"paused": False})
    now = await listed()
    assert now.pop("hello") == (False, "healthy")
    assert set(now.values()) == {(True, "paused")}

    resumed = await client.ok("POST", "/schedules/pause", {"paused": False})
    assert resumed == {"paused": False, "updated": len(now)}
    assert set((await listed()).values()) == {(False, "healthy")}
    await client.ok("POST", "/schedules/ticker/pause", {"paused": True})  # it ticks each second


async def test_job_create_from_the_form_get_run_and_delete(world: World) -> None:
    client = world.client
    form = seed_job("scratch", tarballPath="hello.tar.gz", tarballSha256=world.hello_sha256)
    response = await client.post("/jobs", form)
    assert response.status_code == 201, response.text  # timeoutSeconds 0 is the default
    job = (await client.ok("GET", "/jobs/scratch"))["job"]
    check_fields(job, JOB, "job scratch")
    assert job["timeoutSeconds"] == 600
    started = await client.ok("ACTION", "/jobs/scratch/run")
    check_fields(started, {"taskId": STR}, "run")
    [item] = (await client.ok("GET", "/jobs/events?name=scratch&limit=25"))["events"]
    check_job_event(item)
    assert (item["taskId"], item["status"]) == (started["taskId"], "queued")
    assert "finishedAtMs" not in item
    assert item["durationMs"] == -1
    await client.ok("DELETE", "/jobs/scratch")
    await world.runtime.stores.queue.cancel(int(started["taskId"]))


async def test_dead_letter_replays_answer_moved(world: World) -> None:
    client = world.client
    refused = world.started["refused"]["taskId"]
    by_ids = await client.ok("POST", "/dlq/replay/ids", {"ids": [refused]})
    check_fields(by_ids, {"moved": INT}, "replay ids")
    assert by_ids["moved"] == 1
    left = await world.runtime.stores.queue.list_dead(DeadFilter(), limit=10, offset=0)
    assert left.total == 1
    replayed = await client.ok("POST", "/dlq/replay", {"limit": 100})
    assert replayed["moved"] == 1
    assert (await client.ok("GET", "/dlq"))["total"] == 0

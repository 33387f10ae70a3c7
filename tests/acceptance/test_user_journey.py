"""The user journey over mTLS, with the real ``longshore`` command in subprocesses.

Certificates from ``longshore certs init``; a job from a git tag served over HTTPS on
loopback; run it and follow its output; download its artifact and check its sha256; a
schedule with a seconds field fires and shows in the events stream; pause it; export the
audit log as CSV and JSONL and find every step with the right actor. A viewer is refused
every mutation (403, audited).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import Longshore, Process, wait_until
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image
from tests.integration.git_server import GitServer, WorkRepo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.docker,
    pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True),
]

REPORT = "nightly report: 42 rows\n"
SCRIPT = f"""#!/bin/sh
echo "starting report"
mkdir -p /artifacts
printf '{REPORT.strip()}\\n' > /artifacts/report.txt
echo "rows: 42"
echo "done"
"""


@pytest.fixture(scope="module")
def busybox() -> None:
    ensure_busybox_image(docker_client())


@pytest.fixture
def git_repo(tmp_path: Path) -> Iterator[tuple[GitServer, str, str]]:
    server = GitServer(tmp_path / "git").start()
    repo = WorkRepo.create(server.root / "reports.git")
    repo.commit(
        {
            "Dockerfile": (
                f'FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n'
            ).encode(),
            "job.sh": SCRIPT.encode(),
        },
        "the nightly report",
    )
    tag = f"v1.0.{uuid.uuid4().hex[:6]}"
    repo.tag(tag)
    url = server.serve("reports.git")
    try:
        yield server, url, tag
    finally:
        server.close()


class EventsListener:
    """Reads ``GET /admin/v1/events`` in a thread, keeping every named event."""

    def __init__(self, url: str, context: ssl.SSLContext) -> None:
        self.url = url
        self.context = context
        self.events: list[tuple[str, str | None, Any]] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> EventsListener:
        self._thread.start()
        return self

    def _run(self) -> None:
        timeout = httpx.Timeout(10.0, read=None)
        with (
            httpx.Client(verify=self.context, timeout=timeout) as client,
            client.stream("GET", self.url) as response,
        ):
            self.connected.set()
            name, event_id, data = "message", None, []
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if not line:
                    if data:
                        self.events.append((name, event_id, _json("\n".join(data))))
                    name, event_id, data = "message", None, []
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))

    def stop(self) -> None:
        self._stop.set()

    def names(self) -> list[str]:
        return [name for name, _, _ in list(self.events)]


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _contains(value: Any, needle: str) -> bool:
    return needle in json.dumps(value)


def test_the_user_journey_over_mtls(
    longshore: Longshore, tmp_path: Path, busybox: None, git_repo: tuple[GitServer, str, str]
):
    server_git, repo_url, tag = git_repo
    certs = tmp_path / "certs"
    printed = longshore.ok(
        "certs",
        "init",
        "--dir",
        str(certs),
        "--client",
        "alice:admin",
        "--client",
        "olga:operator",
        "--client",
        "vic:viewer",
    )
    tls_env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in printed.splitlines()
        if line.startswith("export ")
    )
    port = free_port()
    serve = start_serve(
        longshore,
        "serve",
        {
            **tls_env,
            "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
            "WORKER_ADMIN_DEFAULT_ROLE": "viewer",
            "WORKER_JOB_REPO_ALLOWLIST": server_git.tls.url("/"),
            "WORKER_JOB_CA_FILE": str(server_git.tls.write_ca(tmp_path / "git-ca.pem")),
            "WORKER_JOB_ALLOW_PRIVATE_HOSTS": "true",
            "WORKER_CONCURRENCY": "2",
        },
    )
    try:
        wait_listening(serve, port)
        _journey(longshore, serve, certs, port, repo_url, tag, tmp_path)
    finally:
        if serve.popen.poll() is None:
            stop(serve)


def _journey(
    longshore: Longshore,
    serve: Process,
    certs: Path,
    port: int,
    repo_url: str,
    tag: str,
    tmp_path: Path,
) -> None:
    url = f"https://localhost:{port}"

    def as_(cn: str) -> dict[str, str]:
        return {
            "WORKER_ADMIN_URL": url,
            "WORKER_ADMIN_CLIENT_CERT": str(certs / f"client-{cn}.pem"),
            "WORKER_ADMIN_CLIENT_KEY": str(certs / f"client-{cn}-key.pem"),
            "WORKER_ADMIN_CLIENT_CA": str(certs / "ca.pem"),
        }

    def context(cn: str) -> ssl.SSLContext:
        made = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        made.load_cert_chain(certs / f"client-{cn}.pem", certs / f"client-{cn}-key.pem")
        return made

    listener = EventsListener(f"{url}/admin/v1/events", context("vic")).start()
    assert listener.connected.wait(20), "the events stream did not open"

    # 1. Define the job from a git tag (admin).
    definition = tmp_path / "job.yaml"
    definition.write_text(
        "name: nightly-report\n"
        "description: the nightly report\n"
        "source: git_tag\n"
        f"repo: {repo_url}\n"
        f"tag: {tag}\n"
        "timeoutSeconds: 120\n"
        "retries: 0\n"
    )
    longshore.ok("jobs", "apply", "-f", str(definition), env=as_("alice"))
    shown = longshore.json("jobs", "show", "nightly-report", env=as_("vic"))
    assert shown["tag"] == tag

    # A viewer may read but not change anything: 403, audited.
    refused = longshore.run("jobs", "run", "nightly-report", env=as_("vic"))
    assert refused.returncode != 0
    assert "403" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr

    # 2. Run it and follow its output (operator); the exit status is the run's.
    followed = longshore.run(
        "jobs", "run", "nightly-report", "--follow", env=as_("olga"), timeout=240
    )
    assert followed.returncode == 0, (followed.stdout, followed.stderr, serve.output())
    lines = followed.stdout.splitlines()
    assert lines[:3] == ["starting report", "rows: 42", "done"], followed.stdout

    runs = longshore.json("runs", "list", "--job", "nightly-report", env=as_("vic"))["runs"]
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == "succeeded"
    assert run["actor"] == "olga"
    assert run["commitSha"]

    # 3. Download its artifact and check the sha256.
    target = tmp_path / "report.txt"
    longshore.ok(
        "runs",
        "artifacts",
        "download",
        run["runId"],
        "report.txt",
        "-o",
        str(target),
        env=as_("vic"),
    )
    assert target.read_bytes() == REPORT.encode()
    listed = longshore.json("runs", "artifacts", "list", run["runId"], env=as_("vic"))
    (artifact,) = listed["artifacts"]
    assert artifact["sha256"] == hashlib.sha256(REPORT.encode()).hexdigest()

    # 4. A schedule with a seconds field fires; its firing shows in the events stream.
    longshore.ok(
        "schedules",
        "create",
        "report-every-3s",
        "--spec",
        "*/3 * * * * *",
        "--factory",
        "nightly-report",
        "--overlap",
        "forbid",
        env=as_("alice"),
    )
    wait_until(
        lambda: any(
            _contains(data, "report-every-3s") and "ScheduleFired" in (name + json.dumps(data))
            for name, _, data in list(listener.events)
        ),
        "a ScheduleFired event of report-every-3s in the events stream",
        timeout=60,
    )

    # 5. Pause it (operator); a viewer cannot.
    assert longshore.run("schedules", "pause", "report-every-3s", env=as_("vic")).returncode != 0
    longshore.ok("schedules", "pause", "report-every-3s", env=as_("olga"))
    schedule = longshore.json("schedules", "show", "report-every-3s", env=as_("vic"))
    assert schedule["paused"] is True
    assert schedule["status"] == "paused"
    listener.stop()

    # 6. Export the audit log; every step is there with its actor.
    csv_file, jsonl_file = tmp_path / "audit.csv", tmp_path / "audit.jsonl"
    longshore.ok("audit", "export", "--format", "csv", "-o", str(csv_file), env=as_("vic"))
    longshore.ok("audit", "export", "--format", "jsonl", "-o", str(jsonl_file), env=as_("vic"))
    rows = list(csv.DictReader(io.StringIO(csv_file.read_text())))
    assert list(rows[0]) == [
        "at",
        "actor",
        "request_id",
        "action",
        "target",
        "status",
        "payload_hash",
        "detail",
    ]
    from_csv = {(r["actor"], r["action"], r["target"], r["status"]) for r in rows}
    records = [json.loads(line) for line in jsonl_file.read_text().splitlines() if line]
    from_jsonl = {(r["actor"], r["action"], r["target"], r["status"]) for r in records}
    expected = {
        ("alice", "job.upsert", "nightly-report", "ok"),
        ("vic", "job.run", "nightly-report", "error"),
        ("olga", "job.run", "nightly-report", "ok"),
        ("alice", "schedule.create", "report-every-3s", "ok"),
        ("vic", "schedule.pause", "report-every-3s", "error"),
        ("olga", "schedule.pause", "report-every-3s", "ok"),
    }
    assert expected <= from_csv, expected - from_csv
    assert expected <= from_jsonl, expected - from_jsonl
    assert all(r["requestId"] and len(r["payloadHash"]) == 64 for r in records)
    serve.assert_running()

"""Secrets and typed parameters end to end: the real ``longshore`` command (``serve`` with a
loopback token), the real Docker engine.

A secret set from stdin (``longshore secrets set``) and granted to a job as a variable and
as a file reaches the container; the job prints it whole and split across two writes (with
a pause between the halves, so they arrive as two chunks) and names two artifacts after it,
and every place its output is shown (the run's output over the API, the live SSE stream,
the retained output, the run's error) shows ``***``; afterwards the value is in no file of
the data dir (every byte searched), only sealed in the store. Typed parameters: the values
arrive as variables and as ``/run/params.json``; a wrong type and an override of a
non-overridable parameter are refused with a 400 naming the parameter.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import tarfile
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from store.events.file import FileEventStore
from store.events.options import EventStoreOptions
from tests.acceptance.conftest import Longshore, Process, wait_until
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image

pytestmark = [pytest.mark.slow, pytest.mark.docker]

TOKEN = "acceptance-token-" + "7" * 24
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "pa55-" + uuid.uuid4().hex  # what the job prints
HALF = len(SECRET) // 2

SECRET_SCRIPT = f"""#!/bin/sh
echo "env: $DB_PASSWORD"
echo "file: $(cat /run/secrets/db.txt)"
ls -ln /run/secrets/db.txt | cut -c1-10
printf 'split: %s' "$(echo "$DB_PASSWORD" | cut -c1-{HALF})"
sleep 1
printf '%s\\n' "$(echo "$DB_PASSWORD" | cut -c{HALF + 1}-)"
ln -s /etc/hostname "/artifacts/$DB_PASSWORD"
echo report > "/artifacts/report-$DB_PASSWORD.txt"
echo done
"""

PARAMS_SCRIPT = """#!/bin/sh
echo "region=$LONGSHORE_PARAM_REGION count=$LONGSHORE_PARAM_COUNT dry=$LONGSHORE_PARAM_DRY"
cat /run/params.json
"""


@pytest.fixture(scope="module")
def busybox() -> None:
    ensure_busybox_image(docker_client())


def job_tarball(directory: Path, name: str, script: str) -> str:
    files = {
        "Dockerfile": f'FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n',
        "job.sh": script,
    }
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(directory / name, "w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return name


class Serve:
    def __init__(self, longshore: Longshore, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tarballs = tmp_path / "tarballs"
        self.tarballs.mkdir()
        self.env = {
            "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{self.port}",
            "WORKER_ADMIN_TOKEN": f"cli:{TOKEN}",
            "WORKER_ADMIN_ROLES": "cli=admin",
            "WORKER_ADMIN_URL": self.url,
            "WORKER_JOB_TARBALL_DIR": str(self.tarballs),
        }
        self.longshore = longshore
        self.process: Process = start_serve(longshore, "serve", self.env)
        wait_listening(self.process, self.port)
        self.http = httpx.Client(base_url=f"{self.url}/admin/v1", headers=HEADERS, timeout=30)

    def cli(self, *args: str, **kwargs: Any) -> Any:
        return self.longshore.run(*args, env=self.env, **kwargs)

    def wait_run(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def finished() -> bool:
            self.process.assert_running()
            found.update(self.http.get(f"/runs/{run_id}").json()["run"])
            return bool(found["finished"])

        wait_until(finished, f"run {run_id} finishes", timeout=180)
        return found


class LiveOutput:
    """Follows ``GET /runs/{id}/output?follow=true`` in a thread, keeping the raw stream."""

    def __init__(self, serve: Serve, run_id: str) -> None:
        self.data = b""
        self._thread = threading.Thread(target=self._run, args=(serve, run_id), daemon=True)
        self._thread.start()

    def _run(self, serve: Serve, run_id: str) -> None:
        with serve.http.stream(
            "GET", f"/runs/{run_id}/output", params={"follow": "true"}, timeout=None
        ) as response:
            for chunk in response.iter_bytes():
                self.data += chunk

    def join(self) -> bytes:
        """The raw stream, once it ended."""
        self._thread.join(60)
        return self.data


def output_text(stream: bytes) -> str:
    """The output an SSE stream of a run carried: its ``output`` events' texts, joined."""
    texts = []
    for block in stream.decode().split("\n\n"):
        lines = block.splitlines()
        if "event: output" in lines:
            data = "".join(line[5:].strip() for line in lines if line.startswith("data:"))
            texts.append(json.loads(data)["text"])
    return "".join(texts)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_a_secret_is_given_as_variable_and_file_and_masked_everywhere(
    longshore: Longshore, tmp_path: Path, busybox: None
) -> None:
    serve = Serve(longshore, tmp_path)
    try:
        # The first start made the key, private (before the API answers).
        assert serve.http.get("/health").status_code == 200
        key = tmp_path / "data" / "secrets.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        # Set from stdin: the value never appears on a command line.
        set_it = serve.cli("secrets", "set", "db-password", input=SECRET + "\n")
        assert set_it.returncode == 0, set_it.stderr
        binary = tmp_path / "blob.bin"
        binary.write_bytes(b"\x00\xff\xfe bytes\n")
        from_file = serve.cli("secrets", "set", "blob", "--file", str(binary), "--keep-newline")
        assert from_file.returncode == 0, from_file.stderr
        listed = json.loads(serve.cli("secrets", "list", "--json").stdout)
        assert [s["name"] for s in listed["secrets"]] == ["blob", "db-password"]
        assert [s["sizeBytes"] for s in listed["secrets"]] == [10, len(SECRET)]
        assert SECRET not in json.dumps(listed)

        name = job_tarball(serve.tarballs, "secret-job.tar.gz", SECRET_SCRIPT)
        job: dict[str, Any] = {
            "name": "uses-secret",
            "source": "tarball_path",
            "tarballPath": name,
            "secrets": [{"name": "nope", "env": "X"}],
        }
        refused = serve.http.post("/jobs", json=job)
        assert refused.status_code == 400
        assert "secrets[0].name" in refused.text
        assert "nope" in refused.text
        job["secrets"] = [
            {"name": "db-password", "env": "DB_PASSWORD"},
            {"name": "db-password", "file": "db.txt"},
        ]
        saved = serve.http.post("/jobs", json=job)
        assert saved.status_code == 201, saved.text
        grants = saved.json()["job"]["secrets"]
        assert [{k: v for k, v in g.items() if v is not None} for g in grants] == job["secrets"]

        run_id = serve.http.post("/jobs/uses-secret/run").json()["runId"]
        live = LiveOutput(serve, run_id)
        run = serve.wait_run(run_id)
        assert run["status"] == "succeeded", run["error"]
        # A name the job chose (a symlink named after the value: skipped) is masked in the
        # run's error like its output.
        assert run["error"] == "artifacts: skipped '***': not a regular file"
        # A file named after the value is kept, listed under its masked name.
        assert [a["name"] for a in run["artifacts"]] == ["report-***.txt"]
        assert SECRET not in json.dumps(run)
        followed = live.join()
        retained = serve.http.get(f"/runs/{run_id}/output").content

        assert SECRET.encode() not in followed
        for text in (output_text(followed), retained.decode()):
            assert SECRET not in text
            assert SECRET[:HALF] not in text
            assert SECRET[HALF:] not in text
            assert "env: ***" in text
            assert "file: ***" in text
            assert "split: ***" in text
            assert "-r--------" in text  # the file is 0400
        assert b"done" in followed
        audit = serve.http.get("/audit", params={"limit": 50}).text
        assert "secret.set" in audit
        assert SECRET not in audit
        exported = serve.http.get("/audit/export", params={"format": "jsonl", "limit": 100})
        assert exported.status_code == 200
        assert "db-password" in exported.text
        assert SECRET not in exported.text
        seed_events = serve.http.get("/jobs/events", params={"name": "uses-secret"}).text
        assert SECRET not in seed_events

        conflict = serve.cli("secrets", "delete", "db-password")
        assert conflict.returncode != 0
        assert "uses-secret" in conflict.stderr
    finally:
        serve.http.close()
        stop(serve.process)

    # Nothing of the data dir holds the value (the store holds it sealed only).
    needle = SECRET.encode()
    leaks = []
    for root, _dirs, files in os.walk(tmp_path / "data"):
        for file in files:
            path = Path(root) / file
            if path.is_file() and needle in path.read_bytes():
                leaks.append(str(path))
    assert leaks == []
    assert SECRET not in (serve.process.logs / "serve.err").read_text(errors="replace")
    # Every use is a job event naming the secret (and how it was given), never its value.
    uses = asyncio.run(secret_uses(tmp_path / "data" / "events", run_id))
    assert uses == [
        {"secret": "db-password", "as": "env", "target": "DB_PASSWORD", "attempt": 1},
        {"secret": "db-password", "as": "file", "target": "/run/secrets/db.txt", "attempt": 1},
    ]


async def secret_uses(directory: Path, run_id: str) -> list[dict[str, Any]]:
    store = await FileEventStore.open(EventStoreOptions(directory=directory))
    try:
        events = await store.by_run(run_id)
    finally:
        await store.close()
    return [dict(e.data) for e in events if e.type == "RunSecretUsed"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_typed_parameters_reach_the_container_and_bad_values_are_refused(
    longshore: Longshore, tmp_path: Path, busybox: None
) -> None:
    serve = Serve(longshore, tmp_path)
    try:
        name = job_tarball(serve.tarballs, "params-job.tar.gz", PARAMS_SCRIPT)
        job = {
            "name": "with-params",
            "source": "tarball_path",
            "tarballPath": name,
            "params": [
                {"name": "region", "type": "enum", "choices": ["eu", "us"], "default": "eu"},
                {"name": "count", "type": "integer", "required": True, "overridable": True},
                {"name": "dry", "type": "boolean", "default": False, "overridable": True},
            ],
        }
        bad_default = {**job, "params": [{"name": "n", "type": "integer", "default": "x"}]}
        refused = serve.http.post("/jobs", json=bad_default)
        assert refused.status_code == 400
        assert "params[0].default" in refused.text
        assert serve.http.post("/jobs", json=job).status_code == 201

        wrong_type = serve.http.post("/jobs/with-params/run", json={"params": {"count": "many"}})
        assert wrong_type.status_code == 400
        assert "params.count" in wrong_type.json()["error"]["message"]
        not_overridable = serve.http.post(
            "/jobs/with-params/run", json={"params": {"count": 1, "region": "us"}}
        )
        assert not_overridable.status_code == 400
        assert "params.region" in not_overridable.json()["error"]["message"]
        assert "not overridable" in not_overridable.json()["error"]["message"]
        missing = serve.http.post("/jobs/with-params/run")
        assert missing.status_code == 400
        assert "params.count" in missing.text
        assert serve.http.get("/runs", params={"job": "with-params"}).json()["total"] == 0

        cli = serve.cli("jobs", "run", "with-params", "-p", "count=7", "-p", "dry=true", "--json")
        assert cli.returncode == 0, cli.stderr
        run_id = json.loads(cli.stdout)["runId"]
        run = serve.wait_run(run_id)
        assert run["status"] == "succeeded", run["error"]
        assert run["params"] == {"region": "eu", "count": 7, "dry": True}
        output = serve.http.get(f"/runs/{run_id}/output").text
        assert "region=eu count=7 dry=true" in output
        assert json.loads(output.splitlines()[1]) == {"count": 7, "dry": True, "region": "eu"}
        refused_cli = serve.cli("jobs", "run", "with-params", "-p", "count=x")
        assert refused_cli.returncode != 0
        assert "params.count" in refused_cli.stderr

        # A schedule gives values (any declared parameter); bad ones are refused when saved.
        schedule = {"name": "params-nightly", "spec": "0 3 * * *", "factory": "with-params"}
        bad = {**schedule, "payload": {"params": {"count": 2, "region": "asia"}}}
        refused_schedule = serve.http.post("/schedules", json=bad)
        assert refused_schedule.status_code == 400
        assert "params.region" in refused_schedule.text
        good = {**schedule, "payload": {"params": {"count": 2, "region": "us"}}}
        assert serve.http.post("/schedules", json=good).status_code in (200, 201)
        assert serve.http.post("/schedules/params-nightly/run").status_code == 200

        def scheduled_run() -> bool:
            runs = serve.http.get("/runs", params={"job": "with-params"}).json()["runs"]
            return any(r["trigger"] == "schedule" for r in runs)

        wait_until(scheduled_run, "the schedule's run is recorded", timeout=60)
        runs = serve.http.get("/runs", params={"job": "with-params"}).json()["runs"]
        fired = next(r for r in runs if r["trigger"] == "schedule")
        run = serve.wait_run(fired["runId"])
        assert run["status"] == "succeeded", run["error"]
        assert run["params"] == {"region": "us", "count": 2, "dry": False}
        output = serve.http.get(f"/runs/{fired['runId']}/output").text
        assert "region=us count=2 dry=false" in output
    finally:
        serve.http.close()
        stop(serve.process)

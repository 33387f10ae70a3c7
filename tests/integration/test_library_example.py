"""The FastAPI example (examples/fastapi_service), run for real: its own process, uvicorn on
loopback, a fresh PostgreSQL database; checked over HTTP and with the longshore CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import ROOT, only_postgres
from tests.integration.library_harness import EVENTUALLY, eventually

pytestmark = [only_postgres, pytest.mark.slow]

TOKENS = "alice:adm1n:admin,vic:v1ewer:viewer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def service(backend, queue_location, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": str(queue_location),
        "EXAMPLE_DATA_DIR": str(tmp_path / "data"),
        "EXAMPLE_OPS_TOKENS": TOKENS,
        "EXAMPLE_PORT": str(port),
    }
    log = (tmp_path / "service.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.fastapi_service"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:

            async def up() -> bool:
                assert process.poll() is None, (tmp_path / "service.log").read_text()
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up)
            yield http, base, process, tmp_path / "service.log"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()


async def test_the_example_service_keeps_its_promises(service, queue_location):
    http, base, process, log = service

    created = await http.post("/signups", json={"email": "ann@example.com"})
    assert created.status_code == 201, created.text
    ann = created.json()

    async def welcomed() -> bool:
        return (await http.get(f"/signups/{ann['userId']}")).json()["welcomeSent"]

    await eventually(welcomed)

    refused = await http.post("/signups", json={"email": "bob@example.com", "referrer": 999})
    assert refused.status_code == 400
    connection = await asyncpg.connect(queue_location)
    try:
        assert await connection.fetchval("SELECT count(*) FROM users") == 1
        bob_tasks = await connection.fetchval(
            "SELECT count(*) FROM tasks WHERE payload->>'email' = 'bob@example.com'"
        )
        assert bob_tasks == 0, "the rolled-back sign-up left no task"
    finally:
        await connection.close()

    ops = f"{base}/ops/longshore"
    viewer = {"Authorization": "Bearer v1ewer"}
    assert (await http.get("/ops/longshore/admin/v1/queues")).status_code == 401
    assert (await http.post("/ops/longshore/admin/v1/pause", headers=viewer)).status_code == 403
    document = (await http.get("/ops/longshore/admin/v1/openapi.json", headers=viewer)).json()
    assert document["servers"] == [{"url": "/ops/longshore"}]

    listed = await _cli("schedules", "--url", ops, "--token", "v1ewer", "list", "--json")
    names = [schedule["name"] for schedule in json.loads(listed)["schedules"]]
    assert names == ["purge_signups"]
    await _cli("schedules", "--url", ops, "--token", "adm1n", "run", "purge_signups")

    async def purged() -> bool:
        connection = await asyncpg.connect(queue_location)
        try:
            return bool(await connection.fetchval("SELECT count(*) FROM purges"))
        finally:
            await connection.close()

    await eventually(purged)

    audit = (await http.get("/ops/longshore/admin/v1/audit", headers=viewer)).json()
    rows = {(row["actor"], row["action"], row["status"]) for row in audit["events"]}
    assert ("alice", "schedule.run", "ok") in rows
    assert ("vic", "dequeue.pause", "error") in rows

    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert await asyncio.to_thread(process.wait, EVENTUALLY) in (0, -signal.SIGTERM)
    output = log.read_text()
    assert "worker stopped" in output
    assert "Application shutdown complete" in output
    assert "Traceback" not in output


async def _cli(*args: str) -> str:
    command = [str(Path(sys.executable).parent / "longshore"), *args]
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out, err = await asyncio.wait_for(proc.communicate(), EVENTUALLY)
    assert proc.returncode == 0, err.decode()
    return out.decode()

"""Bounded before authentication: a body is read only once the caller is authenticated and
must arrive in time, slow headers close the connection, and failed authentications from
one client are slowed down."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn

from admin.app import create_app
from admin.config import AdminConfig, Role
from admin.http_protocol import HeaderDeadlineH11Protocol
from admin.middleware import FAILED_AUTH_LIMIT
from admin.services import AdminServices
from admin.tls import mtls_config
from service import api_server
from store.events import AuditLog, EventStoreOptions, FileEventStore

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

TOKEN = "operator-secret-token"
CONFIG = AdminConfig(tokens={"olga": TOKEN}, roles={"olga": Role.OPERATOR})


@pytest.fixture
async def app(queue: Any, tmp_path: Path) -> AsyncIterator[Any]:
    options = EventStoreOptions(directory=tmp_path / "events")
    async with await FileEventStore.open(options) as store:
        built = create_app(
            services=AdminServices(queue=queue, audit=AuditLog(store)), config=CONFIG
        )
        [middleware] = [m for m in built.user_middleware if "max_body_bytes" in m.kwargs]
        middleware.kwargs.update(body_timeout=0.3, failed_auth_delay=0.4)
        async with built.router.lifespan_context(built):
            yield built


async def _call(app: Any, headers: list[tuple[bytes, bytes]], receive: Any) -> list[Any]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/admin/v1/pause",
        "raw_path": b"/admin/v1/pause",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"admin.test"), *headers],
        "client": ("10.1.2.3", 5555),
        "server": ("admin.test", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 5)
    return sent


async def test_an_unauthenticated_body_is_never_read(app: Any) -> None:
    async def receive() -> Any:
        raise AssertionError("the body of an unauthenticated request was read")

    sent = await _call(app, [(b"content-length", str(1 << 20).encode())], receive)
    assert sent[0]["status"] == 401
    assert (b"www-authenticate", b"Bearer") in sent[0]["headers"]


async def test_a_body_that_does_not_arrive_in_time_is_408(app: Any, queue: Any) -> None:
    async def receive() -> Any:
        await asyncio.sleep(3600)

    headers = [
        (b"authorization", f"Bearer {TOKEN}".encode()),
        (b"content-length", b"100"),
        (b"content-type", b"application/json"),
    ]
    sent = await _call(app, headers, receive)
    assert sent[0]["status"] == 408
    assert not await queue.is_global_paused()


async def test_failed_authentications_from_one_client_are_slowed_down(app: Any) -> None:
    transport = httpx.ASGITransport(app=app, client=("10.9.9.9", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        wrong = {"Authorization": "Bearer wrong-token-guess"}
        began = time.perf_counter()
        for _ in range(FAILED_AUTH_LIMIT):
            assert (await client.get("/admin/v1/health", headers=wrong)).status_code == 401
        assert time.perf_counter() - began < 0.4 * FAILED_AUTH_LIMIT / 2
        began = time.perf_counter()
        assert (await client.get("/admin/v1/health", headers=wrong)).status_code == 401
        assert time.perf_counter() - began >= 0.4
        # The right token is never delayed.
        right = {"Authorization": f"Bearer {TOKEN}"}
        began = time.perf_counter()
        assert (await client.get("/admin/v1/health", headers=right)).status_code == 200
        assert time.perf_counter() - began < 0.4


class _QuickDeadline(HeaderDeadlineH11Protocol):
    header_timeout = 0.3


async def test_a_client_trickling_its_headers_is_disconnected(app: Any) -> None:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=_QuickDeadline, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /admin/v1/health HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        began = time.perf_counter()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        assert time.perf_counter() - began < 2
        writer.close()
        # A client that sends its headers in time is served as usual.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /admin/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await asyncio.to_thread(sock.recv, 100)).startswith(b"HTTP/1.1 401")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_a_client_that_never_completes_the_tls_handshake_is_disconnected(
    app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_server, "TLS_HANDSHAKE_SECONDS", 0.3)
    ca = trustme.CA()
    files = {name: tmp_path / f"{name}.pem" for name in ("server", "key", "ca")}
    issued = ca.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(files["server"])
    issued.private_key_pem.write_to_path(files["key"])
    ca.cert_pem.write_to_path(files["ca"])
    config = mtls_config(
        app,
        host="127.0.0.1",
        port=0,
        certfile=files["server"],
        keyfile=files["key"],
        ca_file=files["ca"],
        log_config=None,
        lifespan="off",
    )
    server = api_server._ServiceServer(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        began = time.perf_counter()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # no ClientHello: closed
        assert time.perf_counter() - began < 3
        writer.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)

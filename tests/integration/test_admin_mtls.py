"""The admin API behind a real uvicorn server on loopback with mTLS (DESIGN §3): the TLS
handshake refuses clients without a valid certificate, and a verified certificate's
subject CN is the actor of the request and of its audit entry."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn

from admin.app import create_app
from admin.config import AdminConfig, Role
from admin.services import AdminServices
from admin.tls import mtls_config
from store.events import AuditLog, AuditQuery, EventStoreOptions, FileEventStore

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@dataclass
class Server:
    url: str
    ca: trustme.CA
    audit: AuditLog
    queue: Any

    def client(
        self, cert: trustme.LeafCert | None, *, ca: trustme.CA | None = None
    ) -> httpx.AsyncClient:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(context)
        if cert is not None:
            cert.configure_cert(context)
        return httpx.AsyncClient(base_url=self.url, verify=context, trust_env=False, timeout=10)


@pytest.fixture
async def server(queue: Any, tmp_path: Path) -> AsyncIterator[Server]:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = (
        tmp_path / "server.pem",
        tmp_path / "server.key",
        tmp_path / "ca.pem",
    )
    server_cert.cert_chain_pems[0].write_to_path(cert_file)
    server_cert.private_key_pem.write_to_path(key_file)
    ca.cert_pem.write_to_path(ca_file)

    async with await FileEventStore.open(EventStoreOptions(directory=tmp_path / "events")) as store:
        audit = AuditLog(store)
        app = create_app(
            services=AdminServices(queue=queue, audit=audit),
            config=AdminConfig(roles={"ui-viewer": Role.VIEWER}, default_role=Role.OPERATOR),
        )
        config = mtls_config(
            app,
            host="127.0.0.1",
            port=0,
            certfile=cert_file,
            keyfile=key_file,
            ca_file=ca_file,
            log_config=None,
            lifespan="on",
        )
        uv = uvicorn.Server(config)
        task = asyncio.create_task(uv.serve())
        try:
            for _ in range(500):
                if uv.started or task.done():
                    break
                await asyncio.sleep(0.01)
            assert uv.started, "uvicorn did not start"
            port = uv.servers[0].sockets[0].getsockname()[1]
            yield Server(url=f"https://127.0.0.1:{port}/admin/v1", ca=ca, audit=audit, queue=queue)
        finally:
            uv.should_exit = True
            await asyncio.wait_for(task, 10)


async def test_a_verified_certificate_cn_is_the_actor(server: Server) -> None:
    viewer = server.ca.issue_cert("ui@example.org", common_name="ui-viewer")
    async with server.client(viewer) as client:
        response = await client.get("/health")
        assert response.status_code == 200, response.text
        response = await client.post("/pause")
        assert response.status_code == 403
        assert "ui-viewer" in response.json()["error"]["message"]

    operator = server.ca.issue_cert("ops@example.org", common_name="ops-console")
    async with server.client(operator) as client:
        response = await client.post("/pause")
        assert response.status_code == 200
        # The certificate wins over any bearer token, and one connection serves many requests.
        response = await client.post("/resume", headers={"Authorization": "Bearer nope"})
        assert response.status_code == 200

    entries = await server.audit.recent(AuditQuery())
    assert [(e.action, e.actor, e.status.value) for e in reversed(entries)] == [
        ("dequeue.pause", "ui-viewer", "error"),
        ("dequeue.pause", "ops-console", "ok"),
        ("dequeue.resume", "ops-console", "ok"),
    ]


async def _refused(client: httpx.AsyncClient) -> None:
    async with client:
        with pytest.raises(httpx.TransportError):
            await client.get("/health")


async def test_a_client_without_a_certificate_is_refused_at_the_handshake(server: Server) -> None:
    await _refused(server.client(None))


async def test_a_certificate_from_another_ca_is_refused(server: Server) -> None:
    stranger = trustme.CA().issue_cert("x@example.org", common_name="ops-console")
    await _refused(server.client(stranger))


async def test_an_expired_certificate_is_refused(server: Server) -> None:
    now = datetime.now(UTC)
    expired = server.ca.issue_cert(
        "old@example.org",
        common_name="ops-console",
        not_before=now - timedelta(days=30),
        not_after=now - timedelta(days=1),
    )
    await _refused(server.client(expired))


async def test_plaintext_is_refused(server: Server) -> None:
    url = server.url.replace("https://", "http://")
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as client:
        with pytest.raises(httpx.TransportError):
            await client.get("/health")
    assert await server.audit.recent(AuditQuery()) == []


async def test_a_blank_cn_falls_back_to_the_san_and_the_mutation_is_audited(
    server: Server,
) -> None:
    blank = server.ca.issue_cert("ops@example.org", common_name=" ")
    async with server.client(blank) as client:
        response = await client.post("/pause")
        assert response.status_code == 200, response.text
    assert await server.queue.is_global_paused()
    [entry] = await server.audit.recent(AuditQuery())
    assert (entry.action, entry.actor, entry.status.value) == (
        "dequeue.pause",
        "ops@example.org",
        "ok",
    )


async def test_a_certificate_without_a_cn_is_identified_by_its_first_san(server: Server) -> None:
    san_only = server.ca.issue_cert("ui-viewer")  # a DNS name, no subject CN
    async with server.client(san_only) as client:
        response = await client.post("/pause")
        assert response.status_code == 403, response.text
        assert "ui-viewer" in response.json()["error"]["message"]
        # The certificate alone identifies the caller: a bearer token never replaces it.
        response = await client.get("/health", headers={"Authorization": "Bearer whatever"})
        assert response.status_code == 200
    [entry] = await server.audit.recent(AuditQuery())
    assert (entry.actor, entry.status.value) == ("ui-viewer", "error")


async def test_a_cn_with_a_control_character_is_refused_at_authentication(
    server: Server,
) -> None:
    forged = server.ca.issue_cert("x@example.org", common_name="ops\nforged line")
    async with server.client(forged) as client:
        response = await client.post("/pause")
        assert response.status_code == 401, response.text
        assert "control" in response.json()["error"]["message"]
    assert not await server.queue.is_global_paused()


async def test_the_console_over_mtls_takes_the_certificate_and_needs_csrf_from_a_browser(
    server: Server,
) -> None:
    operator = server.ca.issue_cert("ops@example.org", common_name="ops-console")
    root = server.url.removesuffix("/admin/v1")
    async with server.client(operator) as client:
        page = await client.get(f"{root}/queues")
        assert page.status_code == 200, page.text
        assert "ops-console (operator)" in page.text
        assert "Secure" in page.headers["set-cookie"]
        token = page.text.split('name="longshore-csrf" content="', 1)[1].split('"', 1)[0]
        browser = {"sec-fetch-site": "same-origin", "origin": "null"}
        refused = await client.post("/pause", headers=browser)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf_rejected"
        accepted = await client.post("/pause", headers={**browser, "x-longshore-csrf": token})
        assert accepted.status_code == 200, accepted.text
        # A program with the certificate (no browser headers) needs no CSRF token.
        client.cookies.clear()
        assert (await client.post("/resume")).status_code == 200
    entries = await server.audit.recent(AuditQuery(action="dequeue.pause"))
    assert [(e.actor, e.status.value) for e in reversed(entries)] == [
        ("ops-console", "error"),
        ("ops-console", "ok"),
    ]

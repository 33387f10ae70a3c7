"""``longshore serve`` against a hostile web page in the operator's browser: a page of
another site that makes the browser talk to the loopback listener (DNS rebinding: the
attacker's name resolves to 127.0.0.1, so its requests are "same-origin" to the browser).
Requests are sent with the headers such a browser sends."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import Longshore
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

CSRF = re.compile(r'<meta name="longshore-csrf" content="([^"]+)"')


def test_none_mode_answers_only_requests_addressed_to_a_loopback_name(
    longshore: Longshore, tmp_path: Path
) -> None:
    port = free_port()
    server = start_serve(
        longshore,
        "serve-none",
        {"WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}", "WORKER_ADMIN_AUTH": "none"},
    )
    wait_listening(server, port)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as own:
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
                page = own.get("/queues", headers={"host": host})
                assert page.status_code == 200, (host, page.text)
        # The rebinding page: its name is what the browser sends as Host and Origin. It
        # reads a page for the CSRF token (the cookie comes along), then pauses all claims.
        evil = f"rebind.attacker.example:{port}"
        same = {"host": evil, "origin": f"http://{evil}", "sec-fetch-site": "same-origin"}
        with httpx.Client(base_url=base, timeout=10) as browser:
            page = browser.get("/queues", headers={"host": evil, "sec-fetch-site": "none"})
            assert page.status_code == 401, page.text
            assert not CSRF.search(page.text)
            api = browser.get("/admin/v1/jobs", headers=same)
            assert api.status_code == 401, api.text
            found = CSRF.search(page.text)
            paused = browser.post(
                "/admin/v1/pause",
                headers={
                    **same,
                    "content-type": "application/json",
                    "x-longshore-csrf": found.group(1) if found else "",
                },
                content=b"{}",
            )
            assert paused.status_code == 401, paused.text
    finally:
        stop(server)

"""A run's live output in a real browser survives a dropped connection: the browser talks
to ``longshore serve`` through a TCP relay, the relay cuts every connection (and refuses new
ones for a while) as the container keeps printing, and the console's EventSource reconnects
with ``Last-Event-ID``; every line is shown once, in order, none lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import socket
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.acceptance.conftest import Longshore
from tests.acceptance.console_browser import Watch, browser
from tests.acceptance.test_console_browser import OPS, TOKENS
from tests.acceptance.test_serve_api import free_port, start_serve, stop, wait_listening
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image

LINES = 12
SCRIPT = f"""#!/bin/sh
i=1
while [ $i -le {LINES} ]; do echo "line $i"; i=$((i + 1)); sleep 1; done
""".encode()
DROPPED = re.compile(r"Failed to load resource: net::ERR_[A-Z_]+ at .*/output\?follow=true")
"""What Chromium logs for the cut stream and the refused reconnections: nothing else."""


class Relay:
    """A TCP relay from a loopback port to ``target``: :meth:`cut` closes every connection
    it carries and, until :meth:`restore`, closes new ones at once (a network drop)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.up = True
        self.carried: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.carried += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        with self.lock:
            carried, self.carried = self.carried, []
        for end in carried:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def _tarball(folder: Path) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        dockerfile = f'FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n'
        for name, data in (("Dockerfile", dockerfile.encode()), ("job.sh", SCRIPT)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lines.tar.gz").write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.browser
@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_live_output_resumes_after_the_connection_drops(
    longshore: Longshore, tmp_path: Path
) -> None:
    ensure_busybox_image(docker_client())
    sha = _tarball(tmp_path / "tarballs")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = start_serve(
        longshore,
        "serve",
        {
            **TOKENS,
            "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
            "WORKER_JOB_TARBALL_DIR": str(tmp_path / "tarballs"),
        },
    )
    try:
        wait_listening(serve, port)
        bearer = {"authorization": f"Bearer {OPS}"}
        job = {
            "name": "lines",
            "source": "tarball_path",
            "tarballPath": "lines.tar.gz",
            "tarballSha256": sha,
        }
        saved = httpx.post(f"{base}/admin/v1/jobs", json=job, headers=bearer)
        assert saved.status_code in (200, 201), saved.text
        relay = Relay(port)
        try:
            _follow_through_a_drop(f"http://127.0.0.1:{relay.port}", relay, tmp_path)
        finally:
            relay.close()
    finally:
        if serve.popen.poll() is None:
            stop(serve)


def _follow_through_a_drop(base: str, relay: Relay, tmp_path: Path) -> None:
    watch = Watch()
    follows: list[dict[str, str]] = []
    with browser(tmp_path / "profile") as context:
        page = watch.attach(context.new_page())

        def seen(request: Any) -> None:
            if "/output?follow=true" in request.url:
                follows.append(request.all_headers())

        context.on("request", seen)
        page.goto(f"{base}/sign-in?next=/jobs/lines")
        page.fill("#token", OPS)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/jobs/lines")
        page.click("button:has-text('Run now')")
        page.wait_for_url(f"{base}/runs/*")
        output = page.locator("#output")
        state = page.locator("#output-state")
        expect(output).to_contain_text("line 2", timeout=120_000)

        # The connection drops while the container keeps printing.
        relay.cut()
        expect(state).to_have_text("reconnecting", timeout=10_000)
        shown_offline = output.inner_text()
        time.sleep(3)
        assert output.inner_text() == shown_offline, "output arrived while cut off"
        relay.restore()

        expect(state).to_have_text(re.compile("^ended"), timeout=60_000)
        lines = output.inner_text().splitlines()
        assert lines == [f"line {i}" for i in range(1, LINES + 1)], lines
        assert page.inner_text("#output-state") == "ended: succeeded"
    # The browser reconnected with the id of the last event it had shown.
    assert len(follows) >= 2, follows
    assert "last-event-id" not in follows[0], follows[0]
    resumed = [headers["last-event-id"] for headers in follows[1:] if "last-event-id" in headers]
    assert resumed, follows
    assert all(value.isdigit() for value in resumed), follows
    unexpected = [problem for problem in watch.problems if not DROPPED.search(problem)]
    assert not unexpected, "\n".join(unexpected)

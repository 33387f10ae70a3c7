"""Console benchmark: how long after a container prints a line the console shows it.

    python -m bench.console_follow [--lines 20] [--interval 0.5] [--database-url URL] [--json]

A real ``longshore serve`` (the embedded store, or PostgreSQL with ``--database-url``) runs a
job whose container prints ``--lines`` lines, one every ``--interval`` seconds, each carrying
the moment it was printed (``/proc/uptime``: the kernel's boot-time clock, which a container
shares with the host; 10 ms resolution). Chromium (``/usr/bin/chromium``, driven by
Playwright) signs in to the console, opens the run's page and follows its output; a
``MutationObserver`` notes when each line is added to the page. The latency of a line is the
page's moment minus the container's, both on the boot-time clock (the page's wall-clock
moment is converted with the host's offset between the two clocks). Because the printed
moment is truncated to 10 ms, a latency is over-stated by up to 10 ms. Target (issue 13):
<= 250 ms. Needs Docker and the local busybox image (``tests.integration.docker_images``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.api import summary_ms
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
OBSERVE = """() => {
    window.__lines = [];
    const output = document.getElementById("output");
    new MutationObserver((changes) => {
        const at = performance.timeOrigin + performance.now();
        for (const change of changes) {
            for (const node of change.addedNodes) window.__lines.push([node.textContent, at]);
        }
    }).observe(output, {childList: true});
}"""


def _script(lines: int, interval: float) -> bytes:
    return (
        "#!/bin/sh\nsleep 3\ni=1\n"
        f"while [ $i -le {lines} ]; do\n"
        '  echo "line $i $(cut -d" " -f1 /proc/uptime)"; i=$((i + 1)); sleep ' + f"{interval}\n"
        "done\n"
    ).encode()


def _tarball(folder: Path, lines: int, interval: float) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        dockerfile = f'FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n'
        for name, data in (
            ("Dockerfile", dockerfile.encode()),
            ("job.sh", _script(lines, interval)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (folder / "follow.tar.gz").write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _serve(folder: Path, token: str, database_url: str | None) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "WORKER_DATA_DIR": str(folder / "data"),
        "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
        "WORKER_ADMIN_TOKEN": f"bench:{token}",
        "WORKER_ADMIN_ROLES": "bench=admin",
        "WORKER_JOB_TARBALL_DIR": str(folder),
        "WORKER_SHUTDOWN_GRACE_SECONDS": "2",
    }
    if database_url:
        env["WORKER_DATABASE_URL"] = database_url
    log = (folder / "serve.log").open("wb")
    command = [sys.executable, "-c", "from service.cli import main; main()", "serve"]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                headers = {"authorization": f"Bearer {token}"}
                if httpx.get(f"{base}/admin/v1/health", headers=headers).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve did not start: see {folder / 'serve.log'}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def measure(lines: int, interval: float, database_url: str | None) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    ensure_busybox_image(docker_client())
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="bench-follow-") as tmp:
        folder = Path(tmp)
        sha = _tarball(folder, lines, interval)
        with _serve(folder, token, database_url) as base, sync_playwright() as playwright:
            headers = {"authorization": f"Bearer {token}"}
            job = {
                "name": "follow",
                "source": "tarball_path",
                "tarballPath": "follow.tar.gz",
                "tarballSha256": sha,
            }
            httpx.post(f"{base}/admin/v1/jobs", json=job, headers=headers).raise_for_status()
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"{base}/sign-in?next=/jobs/follow")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/jobs/follow")
            page.click("button:has-text('Run now')")
            page.wait_for_url(f"{base}/runs/*")
            page.evaluate(OBSERVE)
            page.wait_for_selector("#output[data-ended]", state="attached", timeout=180_000)
            seen: list[list[Any]] = page.evaluate("window.__lines")
            browser.close()
    offset = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    latencies: list[float] = []
    for text, at_ms in seen:
        for line in str(text).splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "line":
                latencies.append(at_ms / 1000 - offset - float(parts[2]))
    if len(latencies) != lines:
        raise SystemExit(f"saw {len(latencies)} of {lines} lines: {seen!r}")
    return {
        "benchmark": "console_follow",
        "backend": "postgres" if database_url else "sqlite",
        "lines": lines,
        "interval_s": interval,
        **summary_ms("line_latency", [value * 1000 for value in latencies]),
        "clock_resolution_ms": 10,
        "target_ms": 250,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--database-url", default=os.environ.get("LONGSHORE_BENCH_DATABASE_URL"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.lines, args.interval, args.database_url)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

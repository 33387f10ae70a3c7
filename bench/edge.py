"""Admin API memory under half-sent request bodies (the bound stated in docs/security.md).

    python -m bench.edge [--connections 200] [--body-mib 1] [--hold 5] [--json]

Starts ``longshore serve`` (SQLite, loopback, a bearer token) in a temporary data directory,
reads its resident memory (``VmRSS``) once it listens, then opens ``--connections``
connections that each send ``POST /admin/v1/pause`` headers announcing a ``--body-mib``
body, without credentials, and half of that body; holds them ``--hold`` seconds and reads
the RSS again (and its peak, ``VmHWM``). Prints the numbers (``--json``: one object).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _memory_kib(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def _wait_listening(port: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError("longshore serve did not start listening")


async def _half_sent(port: int, body: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /admin/v1/pause HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {body}\r\n\r\n"
    )
    writer.write(head.encode() + b" " * (body // 2))
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    return reader, writer


async def attack(port: int, connections: int, body: int, hold: float) -> int:
    """Open the half-sent requests, hold them; returns how many were answered."""
    opened = await asyncio.gather(
        *(_half_sent(port, body) for _ in range(connections)), return_exceptions=True
    )
    await asyncio.sleep(hold)
    answered = 0
    for item in opened:
        if isinstance(item, BaseException):
            continue
        reader, writer = item
        with contextlib.suppress(Exception):
            if await asyncio.wait_for(reader.read(12), 0.05):
                answered += 1
        writer.close()
    return answered


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--body-mib", type=float, default=1.0)
    parser.add_argument("--hold", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {
            **os.environ,
            "WORKER_DATA_DIR": data,
            "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
            "WORKER_ADMIN_TOKEN": secrets.token_urlsafe(32),
            "WORKER_LOG_LEVEL": "WARNING",
        }
        env.pop("WORKER_DATABASE_URL", None)
        command = [sys.executable, "-c", "from service.cli import main; main()", "serve"]
        server = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_listening(port)
            time.sleep(1.0)
            before = _memory_kib(server.pid)
            body = int(args.body_mib * (1 << 20))
            answered = asyncio.run(attack(port, args.connections, body, args.hold))
            during = _memory_kib(server.pid)
        finally:
            server.terminate()
            server.wait(30)
    result: dict[str, Any] = {
        "connections": args.connections,
        "body_bytes": body,
        "answered_early": answered,
        "rss_before_mib": round(before["VmRSS"] / 1024, 1),
        "rss_during_mib": round(during["VmRSS"] / 1024, 1),
        "rss_peak_mib": round(during["VmHWM"] / 1024, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name}: {value}")


if __name__ == "__main__":
    main()

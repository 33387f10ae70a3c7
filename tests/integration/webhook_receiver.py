"""A webhook receiver on loopback for notification tests: a real HTTP server (the standard
library's, in a thread) that records every request and answers each path as told.

``Receiver.reserve()`` picks a free port without listening on it (a receiver that is down);
``start()`` begins listening on that port.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_SECONDS = 3.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, secret: str) -> bool:
        """Whether the signature header is the HMAC-SHA256 of ``<timestamp>.<body>``."""
        stamp = self.headers.get("x-longshore-timestamp", "")
        expected = hmac.new(secret.encode(), stamp.encode() + b"." + self.body, hashlib.sha256)
        shown = self.headers.get("x-longshore-signature", "")
        return bool(stamp) and hmac.compare_digest(shown, "sha256=" + expected.hexdigest())


@dataclass
class Receiver:
    port: int
    answers: dict[str, int] = field(default_factory=dict)
    """Status per path (200 when unnamed); 302 answers redirect to ``/elsewhere``; ``0``
    answers nothing for :data:`HANG_SECONDS` (a receiver that hangs)."""
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @classmethod
    def reserve(cls) -> Receiver:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        return cls(port=port)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [item for item in list(self.received) if item.path == path]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {key.lower(): value for key, value in self.headers.items()}
                receiver.received.append(Received(self.path, headers, body))
                status = receiver.answers.get(self.path, 200)
                if status == 0:
                    time.sleep(HANG_SECONDS)
                    status = 200
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", receiver.url("/elsewhere"))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

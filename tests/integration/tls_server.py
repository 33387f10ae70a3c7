"""A real HTTPS server on loopback for integration tests, with a throwaway ``trustme`` CA.

It serves a mutable table of routes, ``path -> bytes | Response | handler``, from a thread, so
async code under test talks to it over real TLS sockets. What it can do:

- plain content (``routes["/a.tar.gz"] = data``), any status and headers (:class:`Response`);
- redirects (:func:`redirect`), to itself under another host name or to anywhere;
- slow answers: a body sent in chunks with a pause before each (:func:`trickle`), stopped at
  once when the server closes;
- bodies of unknown length, close-delimited or chunked (an iterable body);
- handlers ``(Request) -> Response`` that see the method, path, query, headers and body
  (``Content-Length`` or chunked), e.g. to front ``git http-backend`` as a CGI;
- a log of every request (:attr:`TLSServer.requests`), to assert that none was made.

The certificate is issued for ``127.0.0.1``, ``localhost`` and ``::1`` (or ``names``), plus
``extra_names``;
the server listens on ``127.0.0.1`` unless told otherwise. Point clients at the CA with
:meth:`TLSServer.write_ca` (a PEM file)::

    with TLSServer(routes={"/x": b"hello"}) as server:
        ca_file = server.write_ca(tmp_path / "ca.pem")
        url = server.url("/x")                       # https://127.0.0.1:<port>/x
        other = server.url("/x", host="localhost")   # same server, another host name
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import trustme

__all__ = [
    "Handler",
    "Request",
    "Response",
    "Route",
    "TLSServer",
    "redirect",
    "trickle",
]


@dataclass(frozen=True)
class Request:
    """A request as the server received it."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    """Header names in lower case."""
    body: bytes

    @property
    def host(self) -> str:
        return self.headers.get("host", "")


@dataclass
class Response:
    """What to answer. ``body`` as bytes gets a ``Content-Length``; an iterable of chunks is
    sent chunked when ``chunked`` and close-delimited otherwise, with ``delay`` seconds before
    each chunk."""

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunked: bool = False


Handler = Callable[[Request], Response]
Route = bytes | Response | Handler


def redirect(location: str, status: int = 302) -> Response:
    """A redirect to ``location``."""
    return Response(status=status, headers={"Location": location})


def trickle(data: bytes, *, chunk_size: int = 1, delay: float = 0.1) -> Response:
    """``data`` sent ``chunk_size`` bytes at a time, ``delay`` seconds apart (a slow server)."""
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    return Response(
        body=chunks, headers={"Content-Length": str(len(data))}, delay=delay, chunked=False
    )


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True

    def __init__(self, owner: TLSServer, address: tuple[str, int], family: int) -> None:
        self.address_family = family
        self.owner = owner
        super().__init__(address, _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients under test hang up mid-answer on purpose (caps, deadlines, refused
        # certificates); that is not a server failure worth a traceback.
        self.owner.errors += 1


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0") or "0")
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        owner = self.server.owner
        split = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=split.path,
            query=split.query,
            headers={key.lower(): value for key, value in self.headers.items()},
            body=self._read_body(),
        )
        with owner.lock:
            owner.requests.append(request)
            route = owner.routes.get(request.path)
        if route is None:
            response = Response(status=404, body=b"not found\n")
        elif isinstance(route, bytes):
            response = Response(body=route)
        elif isinstance(route, Response):
            response = route
        else:
            response = route(request)
        self._send(response, head_only=self.command == "HEAD")

    def _send(self, response: Response, *, head_only: bool) -> None:
        stopping = self.server.owner.stopping
        self.close_connection = True
        self.send_response(response.status)
        headers = {key.lower(): value for key, value in response.headers.items()}
        if isinstance(response.body, bytes):
            headers.setdefault("content-length", str(len(response.body)))
        elif response.chunked:
            headers["transfer-encoding"] = "chunked"
        headers.setdefault("content-type", "application/octet-stream")
        headers["connection"] = "close"
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if head_only:
            return
        chunks = [response.body] if isinstance(response.body, bytes) else response.body
        for chunk in chunks:
            if response.delay and stopping.wait(response.delay):
                return
            if response.chunked and not isinstance(response.body, bytes):
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                self.wfile.write(chunk)
            self.wfile.flush()
        if response.chunked and not isinstance(response.body, bytes):
            self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch


class TLSServer:
    """An HTTPS server on a loopback address in a background thread (a context manager)."""

    def __init__(
        self,
        routes: Mapping[str, Route] | None = None,
        *,
        ca: trustme.CA | None = None,
        bind: str = "127.0.0.1",
        extra_names: Iterable[str] = (),
        names: Iterable[str] | None = None,
    ) -> None:
        self.ca = ca or trustme.CA()
        self.bind = bind
        self.routes: dict[str, Route] = dict(routes or {})
        self.requests: list[Request] = []
        self.errors = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        default = ["127.0.0.1", "localhost", "::1"] if names is None else list(names)
        self._names = [*default, *extra_names]
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not started"
        return int(self._server.server_address[1])

    def url(self, path: str = "/", *, host: str | None = None, scheme: str = "https") -> str:
        """The URL of ``path`` on this server under ``host`` (default: the bound address)."""
        name = host or self.bind
        if ":" in name:
            name = f"[{name}]"
        return f"{scheme}://{name}:{self.port}{path}"

    def write_ca(self, path: Path) -> Path:
        """Write the CA certificate (PEM) that clients must trust; returns ``path``."""
        self.ca.cert_pem.write_to_path(str(path))
        return path

    def request_paths(self) -> list[str]:
        with self.lock:
            return [request.path for request in self.requests]

    def start(self) -> TLSServer:
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        server = _Server(self, (self.bind, 0), family)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*self._names).configure_cert(context)
        # The handshake happens in the handler thread, on first read, so a client that
        # stalls or refuses the certificate never blocks the accept loop.
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> TLSServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

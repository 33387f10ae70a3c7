"""Real git over HTTPS on loopback: ``git http-backend`` as a CGI behind :class:`TLSServer`.

:class:`GitServer` serves the repositories under ``root`` with git's own smart HTTP server
(``git http-backend``), so clients under test speak the real protocol (v2 when they ask for
it, v0 otherwise) over real TLS, with a ``trustme`` CA. Only the two smart-HTTP endpoints of
each served repository are routed (``<name>/info/refs`` and ``<name>/git-upload-pack``);
everything else, including the dumb protocol's paths, is a 404.

:class:`WorkRepo` makes the repositories that are served: commits, lightweight and annotated
tags, branches, moving a tag. The served repository is the working repository itself, so a
change is visible to the next request at once.

Every request is in :attr:`TLSServer.requests` (via :attr:`GitServer.tls`);
:meth:`GitServer.commands` decodes the protocol-v2 commands (``ls-refs``, ``fetch``) the
client sent, undoing a gzip ``Content-Encoding`` first, so a test can assert that a cached
run made no ``fetch``::

    with GitServer(tmp_path / "srv") as git_server:
        repo = WorkRepo.create(git_server.root / "proj.git")
        repo.commit({"Dockerfile": b"FROM scratch\\n"}, "first")
        repo.tag("v1")
        url = git_server.url("proj.git")        # https://127.0.0.1:<port>/proj.git
        ca = git_server.tls.write_ca(tmp_path / "ca.pem")
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import trustme

from tests.integration.tls_server import Request, Response, TLSServer

__all__ = ["GitServer", "WorkRepo", "git"]

_GIT = shutil.which("git") or "git"
_BACKEND_TIMEOUT = 30.0
# Headers a CGI gets as HTTP_* variables; http-backend reads Git-Protocol (v2) and
# Content-Encoding (gzip request bodies) from them.
_FORWARDED_HEADERS = ("git-protocol", "content-encoding", "accept", "user-agent")


def _clean_env(home: Path) -> dict[str, str]:
    """An environment for the fixture's own git processes: no user or system config."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }


def git(repo: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run ``git -C repo args`` for test setup and return its stdout (stripped)."""
    proc = subprocess.run(
        [_GIT, "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=dict(env) if env is not None else _clean_env(repo),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout.strip()


@dataclass
class WorkRepo:
    """A non-bare repository that tests commit to and tag; served as is."""

    path: Path

    @classmethod
    def create(cls, path: Path, *, branch: str = "main") -> WorkRepo:
        path.mkdir(parents=True)
        git(path, "init", "--quiet", f"--initial-branch={branch}")
        return cls(path)

    def git(self, *args: str) -> str:
        return git(self.path, *args)

    def commit(
        self, files: Mapping[str, bytes], message: str, *, executable: tuple[str, ...] = ()
    ) -> str:
        """Write ``files`` (paths relative to the work tree), commit, return the commit SHA.
        Paths in ``executable`` get mode 0755, the others 0644."""
        for name, data in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o755 if name in executable else 0o644)
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def tag(self, name: str, *, annotated: bool = False, target: str = "HEAD") -> None:
        """Create (or move, with ``--force``) a lightweight or annotated tag."""
        if annotated:
            self.git("tag", "--force", "-a", "-m", f"tag {name}", name, target)
        else:
            self.git("tag", "--force", name, target)

    def branch(self, name: str, target: str = "HEAD") -> None:
        self.git("branch", "--force", name, target)


class GitServer:
    """``git http-backend`` for every repository under ``root``, over HTTPS on loopback."""

    def __init__(self, root: Path, *, ca: trustme.CA | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.tls = TLSServer(ca=ca)
        self._home = root / ".home"

    # --- serving -------------------------------------------------------------------------

    def serve(self, name: str) -> str:
        """Route the smart-HTTP endpoints of ``root/name``; returns its URL."""
        for endpoint in ("info/refs", "git-upload-pack"):
            self.tls.routes[f"/{name}/{endpoint}"] = self._backend
        return self.url(name)

    def url(self, name: str, *, host: str | None = None) -> str:
        return self.tls.url(f"/{name}", host=host)

    def _backend(self, request: Request) -> Response:
        env = _clean_env(self._home)
        env.update(
            {
                "GIT_PROJECT_ROOT": str(self.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "REQUEST_METHOD": request.method,
                "PATH_INFO": request.path,
                "QUERY_STRING": request.query,
                "CONTENT_TYPE": request.headers.get("content-type", ""),
                "CONTENT_LENGTH": str(len(request.body)),
                "REMOTE_ADDR": "127.0.0.1",
            }
        )
        for header in _FORWARDED_HEADERS:
            if header in request.headers:
                env["HTTP_" + header.upper().replace("-", "_")] = request.headers[header]
        proc = subprocess.run(
            [_GIT, "http-backend"],
            input=request.body,
            capture_output=True,
            env=env,
            timeout=_BACKEND_TIMEOUT,
            check=False,
        )
        return _parse_cgi(proc.stdout, proc.stderr)

    # --- what clients asked --------------------------------------------------------------

    def requests(self) -> list[Request]:
        with self.tls.lock:
            return list(self.tls.requests)

    def commands(self) -> list[str]:
        """The protocol-v2 commands (``ls-refs``, ``fetch``) of every POST, in order; a POST
        of protocol v0 (a want/have negotiation) counts as ``fetch``."""
        found: list[str] = []
        for request in self.requests():
            if request.method != "POST":
                continue
            body = request.body
            if request.headers.get("content-encoding", "").lower() in ("gzip", "x-gzip"):
                body = gzip.decompress(body)
            command = _v2_command(body)
            found.append(command or "fetch")
        return found

    def clear_log(self) -> None:
        with self.tls.lock:
            self.tls.requests.clear()

    # --- lifetime ------------------------------------------------------------------------

    def start(self) -> GitServer:
        self._home.mkdir(exist_ok=True)
        self.tls.start()
        return self

    def close(self) -> None:
        self.tls.close()

    def __enter__(self) -> GitServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _v2_command(body: bytes) -> str | None:
    """The ``command=`` of a protocol-v2 request (its first pkt-line), if it is one."""
    if len(body) < 4:
        return None
    try:
        length = int(body[:4], 16)
    except ValueError:
        return None
    line = body[4:length].decode("utf-8", "replace").strip()
    return line.removeprefix("command=") if line.startswith("command=") else None


def _parse_cgi(stdout: bytes, stderr: bytes) -> Response:
    """A CGI answer (headers, blank line, body) as a :class:`Response`."""
    head, sep, body = stdout.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = stdout.partition(b"\n\n")
    if not sep:
        return Response(status=500, body=b"http-backend failed: " + stderr[-2000:])
    status = 200
    headers: dict[str, str] = {}
    for raw in head.replace(b"\r\n", b"\n").split(b"\n"):
        key, _, value = raw.decode("latin-1").partition(":")
        key, value = key.strip(), value.strip()
        if key.lower() == "status":
            status = int(value.split()[0])
        elif key:
            headers[key] = value
    return Response(status=status, body=body, headers=headers)

"""Running git: one process at a time, in its own process group, and reading its errors.

:class:`GitRunner` runs ``git <options> <args>`` with a fixed argument list (user text only
ever appears after ``--`` or inside ``refs/tags/<tag>``) and the environment and options of
:mod:`jobrunner.sources.git.environment`. Each process runs in its own process group, which
is killed (``SIGKILL``) when the caller's deadline passes or it is cancelled, so no
``git-remote-https`` child outlives a run. Output is capped, and a guard (e.g. the size of the
repository being fetched) can stop git while it runs.

**Errors** (:func:`classify_git_error`) carry git's stderr (the last 2000 characters, control
characters removed, credentials in URLs replaced by ``***``: :func:`scrub`): TLS failures (an
untrusted certificate: set ``WORKER_JOB_CA_FILE``), network errors, timeouts and 5xx answers
are :class:`FetchFailed` (worth a retry); a redirect (never followed) is :class:`NotAllowed`;
a missing repository, a repository that asks for credentials or another 4xx answer is
:class:`SourceRejected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from jobrunner.errors import (
    FetchFailed,
    JobRunnerError,
    NotAllowed,
    SourceRejected,
    UnsafeArchive,
)
from store.background import TaskOwner

__all__ = ["GitResult", "GitRunner", "Sink", "classify_git_error", "scrub"]

_URL_CREDENTIALS: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_HTTP_ERROR: Final = re.compile(r"returned error: (\d{3})")
_ANY_URL: Final = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s']*")
_TLS_WORDS: Final = re.compile(r"\b(certificate|ssl|tls)\b|gnutls|openssl|handshake")
_MAX_STDERR: Final = 2000
_MAX_STDOUT: Final = 1 << 20
_CHUNK: Final = 64 * 1024
_WATCH_INTERVAL: Final = 0.2


class Sink(Protocol):
    """Where a git process's stdout goes (a file, a hashing writer)."""

    def write(self, data: bytes, /) -> int: ...


@dataclass
class GitResult:
    """How a git process ended: its exit status, its stdout (unless it went to a
    :class:`Sink`) and the end of its stderr."""

    returncode: int
    stdout: bytes
    stderr: str


@dataclass
class GitRunner:
    """How to run git for one fetch: the binary, the environment and the ``-c`` options.
    ``step`` is the subcommand running (or last run), for error messages."""

    binary: str
    env: dict[str, str]
    options: list[str]
    cwd: Path
    step: str = "starting"

    async def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        stdout_to: Sink | None = None,
        stdout_cap: int = _MAX_STDOUT,
        guard: Callable[[], str | None] | None = None,
    ) -> GitResult:
        """Run ``git <options> <args>``; a timeout or cancellation kills its process group.

        ``stdout_to`` receives stdout (else it is returned), at most ``stdout_cap`` bytes;
        ``guard`` is called every few tenths of a second and stops git when it returns a
        reason (returned as :class:`SourceRejected`).
        """
        self.step = args[0]
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            *self.options,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env if env is not None else self.env),
            cwd=self.cwd,
            start_new_session=True,
        )
        stopped: list[str] = []

        def stop(reason: str) -> None:
            stopped.append(reason)
            _kill_group(proc)

        try:
            assert proc.stdout is not None
            assert proc.stderr is not None
            # Leaving the block cancels and awaits the guard's watcher.
            async with TaskOwner("git") as watchers:
                if guard is not None:
                    watchers.spawn(_watch(guard, stop), name=f"git-{self.step}-guard")
                stdout, stderr = await asyncio.gather(
                    _read_stdout(
                        proc.stdout,
                        stdout_to,
                        stdout_cap,
                        lambda why: stop(f"git {self.step} {why}"),
                    ),
                    _read_stderr(proc.stderr),
                )
                returncode = await proc.wait()
        finally:
            if proc.returncode is None:
                _kill_group(proc)
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()
        if stopped:
            raise _stopped_error(stopped[0])
        return GitResult(returncode=returncode, stdout=stdout, stderr=stderr)


def _stopped_error(reason: str) -> JobRunnerError:
    return UnsafeArchive(reason) if reason.startswith("git archive") else SourceRejected(reason)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _read_stdout(
    stream: asyncio.StreamReader,
    sink: Sink | None,
    cap: int,
    stop: Callable[[str], None],
) -> bytes:
    kept: list[bytes] = []
    size = 0
    while chunk := await stream.read(_CHUNK):
        size += len(chunk)
        if size > cap:
            stop(f"output is larger than the cap of {cap} bytes")
            return b""
        if sink is not None:
            sink.write(chunk)
        else:
            kept.append(chunk)
    return b"".join(kept)


async def _read_stderr(stream: asyncio.StreamReader) -> str:
    tail = b""
    while chunk := await stream.read(_CHUNK):
        tail = (tail + chunk)[-4 * _MAX_STDERR :]
    return tail.decode("utf-8", "replace")


async def _watch(guard: Callable[[], str | None], stop: Callable[[str], None]) -> None:
    while True:
        await asyncio.sleep(_WATCH_INTERVAL)
        reason = await asyncio.to_thread(guard)
        if reason is not None:
            stop(reason)
            return


def scrub(text: str, limit: int = _MAX_STDERR) -> str:
    """git's stderr made fit for an error message: credentials in URLs replaced, control
    characters removed, at most ``limit`` characters (the end, where git's reason is)."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _CONTROL.sub(" ", text).strip()
    if len(text) > limit:
        text = "..." + text[-limit:]
    return text


def classify_git_error(
    stderr: str, returncode: int, step: str, repo: str, host: str
) -> JobRunnerError:
    """The error for a git command that failed, by what git said on stderr (in the C
    locale): transient failures are :class:`FetchFailed`, the others permanent."""
    detail = scrub(stderr) or f"exit status {returncode}"
    # Classified without the URLs git quotes, so a repository named "tls-tools" is not a
    # TLS failure.
    lowered = _ANY_URL.sub("<url>", detail.lower())
    http = _HTTP_ERROR.search(lowered)
    status = int(http.group(1)) if http else None
    where = f"git {step} of {repo}"
    if _TLS_WORDS.search(lowered):
        return FetchFailed(
            f"{where}: TLS failed, the certificate of {host} is not trusted or invalid "
            f"(a private CA can be trusted with WORKER_JOB_CA_FILE): {detail}"
        )
    if status is not None and 300 <= status < 400:
        return NotAllowed(
            f"{where}: the server answered with a redirect (HTTP {status}); redirects are "
            f"not followed, use the repository's final URL: {detail}"
        )
    if "transport" in lowered and "not allowed" in lowered:
        return NotAllowed(f"{where}: {detail}")
    if (
        status in (401, 403)
        or "could not read username" in lowered
        or "could not read password" in lowered
        or "authentication failed" in lowered
    ):
        return SourceRejected(
            f"{where}: the repository needs credentials, which are not supported: {detail}"
        )
    if status == 404 or ("repository" in lowered and "not found" in lowered):
        return SourceRejected(f"{where}: repository not found: {detail}")
    if status is not None and 400 <= status < 500 and status not in (408, 425, 429):
        return SourceRejected(f"{where}: HTTP {status}: {detail}")
    return FetchFailed(f"{where} failed: {detail}")

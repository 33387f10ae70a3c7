"""Git tag sources: the ``git archive`` of the commit a tag names, fetched over HTTPS.

:func:`fetch_git_tag` turns ``(repo, tag)`` into a :class:`GitSource`: the resolved commit
SHA and a plain tar of that commit's tree (``git archive --format=tar <sha>``) in ``dest_dir``,
with its SHA256. The tar is untrusted like any other archive and goes through
:func:`jobrunner.archive.build_context_file` before it is built.

**Before git runs**, and with nothing sent anywhere when a check fails:

- the tag matches :data:`TAG_PATTERN` (1-128 characters of letters, digits and ``._/+-``,
  starting with a letter or digit) and git's ref-name rules (no ``..``, ``@{``, ``//``, no
  component starting with ``.`` or ending with ``.lock``, no trailing ``/`` or ``.``):
  :class:`InvalidDefinition`. A tag can never start with ``-``, and it only ever reaches git
  inside ``refs/tags/<tag>``, so git cannot read it as an option;
- the repository URL is ``https://`` (``http://`` only with ``allow_http``; never ``file:``,
  ``ext::``, ``ssh``, ``<transport>::`` or a local path), has a host, no credentials, no query
  or fragment, no white space, control characters or ``\\``, no ``.``/``..`` segment and no
  percent-encoded ``.``, ``/`` or ``\\`` (which could walk out of an allowlisted prefix); it
  matches ``repo_allowlist`` (``*``; the whole URL; or an entry ending in ``/`` as a prefix);
  and every address its host resolves to is public unless ``allow_private_hosts``
  (:mod:`jobrunner.sources.netcheck`): :class:`NotAllowed`. git is then pinned to exactly the
  checked addresses (``http.curloptResolve``), so a DNS answer that changes between the check
  and git's own lookup (rebinding) cannot send it elsewhere.

**Steps**, each a fixed argument list where user text only appears after ``--`` (the URL) or
inside ``refs/tags/<tag>``:

1. the tag is resolved without fetching anything: first with one protocol-v2 ``ls-refs``
   request made directly, to a checked address (:mod:`jobrunner.sources.gitrefs`); when
   that gives no clean answer, with
   ``git ls-remote -- <url> refs/tags/T refs/tags/T^{} refs/heads/T`` (protocol v2: one
   ``info/refs`` GET and one ``ls-refs`` POST). Only the exact names ``refs/tags/T`` and
   ``refs/tags/T^{}`` count (the peeled commit of an annotated tag; the tag itself for a
   lightweight one), so a branch ``T`` is never used; when only a branch of that name exists
   the error says so (:class:`SourceRejected`);
2. if the source archive of that commit from that repository is in the cache (see below), it
   is copied out (and re-hashed): the run costs one ``ls-refs`` request, no git process, no
   fetch and no archive;
3. otherwise, in a fresh bare repository in a temporary directory under ``dest_dir``:
   ``git init --bare``, ``git fetch --depth 1 --no-tags -- <url> +refs/tags/T:refs/tags/T``
   (objects checked with ``transfer.fsckObjects``; the repository's size is watched and the
   fetch stopped past the archive cap), ``git rev-parse --verify refs/tags/T^{commit}``, which
   must equal what ``ls-remote`` said (else the tag moved meanwhile: :class:`FetchFailed`, a
   retry resolves it again), and ``git archive --format=tar <sha>`` streamed to a file with a
   byte cap. The temporary directory is removed whatever happens.

**Hardened git**: every process gets an environment built from scratch (nothing inherited:
no ``GIT_*``, proxy, ``SSL_*`` or locale variables of the service reach git), with
``GIT_CONFIG_NOSYSTEM=1``, ``GIT_CONFIG_GLOBAL=/dev/null``, ``HOME``/``XDG_CONFIG_HOME`` in
the temporary directory, ``GIT_TERMINAL_PROMPT=0``, ``GIT_ASKPASS=/bin/false``,
``GIT_ALLOW_PROTOCOL=https`` (plus ``http`` when allowed), ``LC_ALL=C``; and ``-c`` options
:func:`git_config_args`: ``protocol.allow=never`` + ``protocol.https.allow=always``,
``http.followRedirects=false``, ``http.sslVerify=true``, ``credential.helper=`` (none),
``core.hooksPath=/dev/null``, no submodules, no automatic gc, protocol v2. Processes run in
their own process group, which is killed (``SIGKILL``) on the deadline or on cancellation,
so no ``git-remote-https`` child outlives a run. GitPython is not used: its ``Git.execute``
always starts from ``os.environ``, and a variable such as ``GIT_SSL_NO_VERIFY`` cannot be
neutralised by overriding it (git disables certificate checks when it is set at all, even
to an empty string).

**Time**: everything, name resolution included, runs under one deadline, ``git_timeout``:
:class:`FetchFailed` naming the step that was running.

**Errors** carry git's stderr (the last 2000 characters, control characters removed,
credentials in URLs replaced by ``***``): TLS failures (an untrusted certificate: set
``WORKER_JOB_CA_FILE``), network errors, timeouts and 5xx answers are :class:`FetchFailed`
(worth a retry); a redirect (never followed) is :class:`NotAllowed`; a missing repository,
a missing tag, a repository that asks for credentials, or a tag not pointing at a commit is
:class:`SourceRejected`; an archive over the cap is :class:`UnsafeArchive`.

**Trusted CAs** (:func:`trust_options`): git trusts what the tarball source trusts, the
system's CAs plus ``ca_file`` when set. ``http.sslCAInfo`` *replaces* the CA file curl would
use (with OpenSSL builds, that drops the public CAs), so with ``ca_file`` git is given a bundle
written for the fetch: the system bundle (:func:`system_ca_bundle`) followed by ``ca_file``;
without it, the system bundle itself. ``http.sslCAPath`` is then pointed at an empty directory:
Debian's libcurl-gnutls also loads its compiled-in directory (``/etc/ssl/certs``, the same CAs
again as ~430 files) on every connection, which costs ~50 ms a connection and adds nothing the
bundle lacks. Where no system bundle file exists, curl's defaults are left alone (and
``ca_file`` alone is the CA file).

**Cache** (:func:`git_cache_dir`, default ``work_dir / "git-cache"``): archives are stored
content-addressed in a :class:`~jobrunner.cache.DownloadCache` under ``objects/`` (verified by
re-hashing when copied out), and ``repos/<sha256 of the repo URL>/<commit sha>`` holds the
SHA256 of the archive made from that commit of that repository. An entry is only written after
a fetch whose ``rev-parse`` matched, so a hit always names a commit this runner has archived
from the same URL. No eviction; delete the directory to reclaim space.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import signal
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Protocol
from urllib.parse import SplitResult, urlsplit

from jobrunner.cache import DownloadCache
from jobrunner.config import RunnerConfig, SourceLimits
from jobrunner.errors import (
    FetchFailed,
    InvalidDefinition,
    JobRunnerError,
    NotAllowed,
    SourceRejected,
    UnsafeArchive,
)
from jobrunner.sources.gitrefs import ls_refs
from jobrunner.sources.netcheck import IPAddress, check_scheme, parse_address, resolve_checked
from jobrunner.sources.tarball import VerifiedTarball

__all__ = [
    "MAX_TAG_LENGTH",
    "TAG_PATTERN",
    "GitSource",
    "check_repo_url",
    "check_tag",
    "classify_git_error",
    "curl_resolve_entry",
    "fetch_git_tag",
    "git_cache_dir",
    "git_config_args",
    "git_env",
    "parse_ls_remote",
    "pick_commit",
    "repo_allowed",
    "scrub",
    "system_ca_bundle",
    "trust_options",
    "write_ca_bundle",
]

logger = logging.getLogger(__name__)

MAX_TAG_LENGTH: Final = 128
TAG_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}")
"""What a tag may look like (the whole name must match; see :func:`check_tag`)."""

_OBJECT_ID: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_ENCODED_SEPARATOR: Final = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)
_URL_CREDENTIALS: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_HTTP_ERROR: Final = re.compile(r"returned error: (\d{3})")
_ANY_URL: Final = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s']*")
_TLS_WORDS: Final = re.compile(r"\b(certificate|ssl|tls)\b|gnutls|openssl|handshake")
_MAX_STDERR: Final = 2000
LS_REFS_TIMEOUT: Final = 10.0
"""Seconds the one-request tag lookup may take before ``git ls-remote`` is asked instead."""
_MAX_LS_REMOTE: Final = 1 << 20
_CHUNK: Final = 64 * 1024
_SAFE_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
_WATCH_INTERVAL: Final = 0.2
_SYSTEM_BUNDLES: Final = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS, BSDs
)


@dataclass(frozen=True, kw_only=True)
class GitSource:
    """The source archive of the commit a tag resolved to."""

    repo: str
    tag: str
    commit_sha: str
    """The commit the tag pointed to (recorded on the run as ``commitSha``)."""
    archive_path: Path
    """``git archive --format=tar`` of the commit, in ``dest_dir``; the caller owns it."""
    archive_sha256: str
    size: int
    from_cache: bool = False
    """True when the archive came from the cache: only ``ls-remote`` reached the server."""

    def as_tarball(self) -> VerifiedTarball:
        """The archive as a :class:`VerifiedTarball`, to be handled like any other source."""
        return VerifiedTarball(
            path=self.archive_path,
            sha256=self.archive_sha256,
            size=self.size,
            origin=self.repo,
            from_cache=self.from_cache,
        )


# --- checks before git runs ----------------------------------------------------------------


def check_tag(tag: str) -> str:
    """Return ``tag`` if it is a safe tag name; :class:`InvalidDefinition` otherwise."""
    if not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag):
        raise InvalidDefinition(
            "tag",
            f"{tag!r} is not allowed: 1-{MAX_TAG_LENGTH} characters of letters, digits, "
            "'.', '_', '/', '+' or '-', starting with a letter or digit",
        )
    components = tag.split("/")
    if (
        ".." in tag
        or "@{" in tag
        or tag.endswith(("/", "."))
        or any(not part or part.startswith(".") or part.endswith(".lock") for part in components)
    ):
        raise InvalidDefinition(
            "tag",
            f"{tag!r} is not a valid tag name: no '..', '//', '@{{', component starting with "
            "'.' or ending with '.lock', and no trailing '/' or '.'",
        )
    return tag


def repo_allowed(url: str, allowlist: Sequence[str]) -> bool:
    """Whether ``url`` matches an entry: ``*``, the whole URL, or a prefix ending in ``/``."""
    for entry in (e.strip() for e in allowlist):
        if entry == "*" or entry == url:
            return True
        if entry.endswith("/") and url.startswith(entry) and len(url) > len(entry):
            return True
    return False


def check_repo_url(repo: str, config: RunnerConfig) -> SplitResult:
    """Check ``repo``'s form, scheme and allowlist entry (not its addresses).

    Raises :class:`NotAllowed` naming what is refused.
    """
    what = "repo"
    if not isinstance(repo, str) or not repo:
        raise NotAllowed(f"{what}: a repository URL is required")
    if len(repo) > 2048:
        raise NotAllowed(f"{what}: URL longer than 2048 characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 or ch == "\\" for ch in repo):
        raise NotAllowed(f"{what}: URL must not contain spaces, control characters or '\\'")
    try:
        url = urlsplit(repo)
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise NotAllowed(f"{what}: not a valid URL: {exc}") from None
    check_scheme(url.scheme, allow_http=config.allow_http, what=what)
    if not repo.lower().startswith(f"{url.scheme.lower()}://"):
        raise NotAllowed(f"{what}: must be an absolute {url.scheme}:// URL")
    if "@" in url.netloc:
        raise NotAllowed(f"{what}: credentials in the URL are not allowed")
    if not url.hostname:
        raise NotAllowed(f"{what}: the URL has no host")
    if url.query or url.fragment or "?" in repo or "#" in repo:
        raise NotAllowed(f"{what}: the URL must not have a query or fragment")
    segments = url.path.split("/")
    if "." in segments or ".." in segments or _ENCODED_SEPARATOR.search(url.path):
        raise NotAllowed(f"{what}: the URL must not contain '.' or '..' segments or encoded '/'")
    if not repo_allowed(repo, config.repo_allowlist):
        raise NotAllowed(
            f"{what}: {repo} is not in the repository allowlist (WORKER_JOB_REPO_ALLOWLIST)"
        )
    return url


# --- git's environment and options ---------------------------------------------------------


def git_env(
    home: Path,
    *,
    allow_http: bool = False,
    git_dir: Path | None = None,
    ceiling: Path | None = None,
) -> dict[str, str]:
    """The whole environment of a git process: built from scratch, nothing inherited."""
    env = {
        "PATH": _SAFE_PATH,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "LC_ALL": "C",
        "LANG": "C",
        "LANGUAGE": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_ALLOW_PROTOCOL": "https:http" if allow_http else "https",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_NO_LAZY_FETCH": "1",
    }
    if git_dir is not None:
        env["GIT_DIR"] = str(git_dir)
    if ceiling is not None:
        # Repository discovery (for commands run outside our bare repository) stops here.
        env["GIT_CEILING_DIRECTORIES"] = str(ceiling)
    return env


def git_config_args(
    *,
    allow_http: bool = False,
    ca_bundle: Path | None = None,
    ca_dir: Path | None = None,
    resolve: str | None = None,
) -> list[str]:
    """The ``-c`` options given to every git command (before the subcommand)."""
    settings = [
        "protocol.allow=never",
        "protocol.https.allow=always",
        f"protocol.http.allow={'always' if allow_http else 'never'}",
        "protocol.file.allow=never",
        "protocol.ext.allow=never",
        "protocol.version=2",
        "http.followRedirects=false",
        "http.sslVerify=true",
        "credential.helper=",
        "core.askPass=/bin/false",
        "core.hooksPath=/dev/null",
        "core.fsmonitor=false",
        "fetch.recurseSubmodules=false",
        "submodule.recurse=false",
        "transfer.fsckObjects=true",
        "fetch.writeCommitGraph=false",
        "gc.auto=0",
        "maintenance.auto=false",
        "init.defaultBranch=main",
        "tar.umask=022",
    ]
    if ca_bundle is not None:
        settings.append(f"http.sslCAInfo={ca_bundle}")
    if ca_dir is not None:
        settings.append(f"http.sslCAPath={ca_dir}")
    if resolve is not None:
        settings.append(f"http.curloptResolve={resolve}")
    args: list[str] = []
    for setting in settings:
        args += ["-c", setting]
    return args


def curl_resolve_entry(host: str, port: int, addresses: Sequence[IPAddress]) -> str | None:
    """The ``http.curloptResolve`` value pinning ``host:port`` to ``addresses`` (None for a
    host that is an IP address already)."""
    if parse_address(host) is not None or not addresses:
        return None
    spelled = ",".join(f"[{a}]" if a.version == 6 else str(a) for a in addresses)
    return f"{host}:{port}:{spelled}"


def system_ca_bundle() -> Path | None:
    """The system's CA bundle file (what git trusts when no ``http.sslCAInfo`` is set)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, *_SYSTEM_BUNDLES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def trust_options(ca_file: Path | None, workspace: Path) -> tuple[Path | None, Path | None]:
    """``(http.sslCAInfo, http.sslCAPath)`` for a fetch (blocking: may write a bundle and an
    empty directory in ``workspace``); see the module docstring."""
    system = system_ca_bundle()
    if system is None:
        return (ca_file.absolute() if ca_file is not None else None), None
    bundle = system if ca_file is None else write_ca_bundle(ca_file, workspace / "ca-bundle.pem")
    empty = workspace / "no-ca-dir"
    empty.mkdir(mode=0o700, exist_ok=True)
    return bundle, empty


def write_ca_bundle(ca_file: Path, dest: Path) -> Path:
    """Write the system bundle followed by ``ca_file`` to ``dest`` (blocking)."""
    system = system_ca_bundle()
    try:
        extra = ca_file.read_bytes()
    except OSError as exc:
        raise FetchFailed(f"cannot read the CA file {ca_file} (WORKER_JOB_CA_FILE): {exc}") from exc
    parts = [system.read_bytes()] if system is not None else []
    parts.append(extra)
    dest.write_bytes(b"\n".join(part.rstrip(b"\n") + b"\n" for part in parts))
    return dest


def scrub(text: str, limit: int = _MAX_STDERR) -> str:
    """git's stderr made fit for an error message: credentials in URLs replaced, control
    characters removed, at most ``limit`` characters (the end, where git's reason is)."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _CONTROL.sub(" ", text).strip()
    if len(text) > limit:
        text = "..." + text[-limit:]
    return text


# --- running git ---------------------------------------------------------------------------


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass
class _Result:
    returncode: int
    stdout: bytes
    stderr: str


@dataclass
class _Git:
    """How to run git for one fetch: the binary, the environment and the ``-c`` options."""

    binary: str
    env: dict[str, str]
    options: list[str]
    cwd: Path
    step: str = "starting"

    async def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        stdout_to: _Sink | None = None,
        stdout_cap: int = _MAX_LS_REMOTE,
        guard: Callable[[], str | None] | None = None,
    ) -> _Result:
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
            watcher = asyncio.create_task(_watch(guard, stop)) if guard is not None else None
            try:
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
                if watcher is not None:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
        finally:
            if proc.returncode is None:
                _kill_group(proc)
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()
        if stopped:
            raise _stopped_error(stopped[0])
        return _Result(returncode=returncode, stdout=stdout, stderr=stderr)


def _stopped_error(reason: str) -> JobRunnerError:
    return UnsafeArchive(reason) if reason.startswith("git archive") else SourceRejected(reason)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _read_stdout(
    stream: asyncio.StreamReader,
    sink: _Sink | None,
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


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def archive_cap(limits: SourceLimits) -> int:
    """Largest ``git archive`` output (and fetched repository) accepted: the archive's total
    file-size cap plus room for tar headers (the same allowance as the archive reader's)."""
    # Per entry: a header, a PAX header for long names and padding; then the PAX global
    # header git writes (the commit id), the end-of-archive blocks and record padding.
    return limits.max_total_bytes + limits.max_entries * 2048 + (1 << 20)


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


# --- the cache -----------------------------------------------------------------------------


def git_cache_dir(config: RunnerConfig) -> Path:
    """Where source archives of fetched commits are cached."""
    return config.work_dir / "git-cache"


def _index_path(config: RunnerConfig, repo: str, commit: str) -> Path:
    repo_key = hashlib.sha256(repo.encode("utf-8")).hexdigest()
    return git_cache_dir(config) / "repos" / repo_key / commit


def _cache_lookup(
    config: RunnerConfig, repo: str, commit: str, dest: Path
) -> tuple[str, int] | None:
    """Copy the cached archive of ``commit`` to ``dest``; its SHA256 and size, or None."""
    try:
        recorded = _index_path(config, repo, commit).read_text("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not re.fullmatch(r"[0-9a-f]{64}", recorded):
        return None
    size = DownloadCache(git_cache_dir(config) / "objects").copy_out(recorded, dest)
    return None if size is None else (recorded, size)


def _cache_store(config: RunnerConfig, repo: str, commit: str, src: Path, sha256: str) -> None:
    DownloadCache(git_cache_dir(config) / "objects").store(src, sha256)
    index = _index_path(config, repo, commit)
    index.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = index.parent / f".tmp-{secrets.token_hex(8)}"
    try:
        tmp.write_text(sha256 + "\n", "ascii")
        os.replace(tmp, index)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


# --- fetching ------------------------------------------------------------------------------


async def _from_cache(
    config: RunnerConfig, repo: str, tag: str, commit: str, dest_dir: Path
) -> GitSource | None:
    """The cached archive of ``commit``, copied to ``dest_dir`` (and re-hashed), if any."""
    dest = dest_dir / f"git-{commit}.tar"
    cached = await asyncio.to_thread(_cache_lookup, config, repo, commit, dest)
    if cached is None:
        return None
    logger.info("git source from cache", extra={"repo": repo, "tag": tag, "commit": commit})
    return GitSource(
        repo=repo,
        tag=tag,
        commit_sha=commit,
        archive_path=dest,
        archive_sha256=cached[0],
        size=cached[1],
        from_cache=True,
    )


def parse_ls_remote(output: bytes) -> dict[str, str]:
    """``ref name -> object id`` from ``git ls-remote`` output (malformed lines skipped)."""
    refs: dict[str, str] = {}
    for line in output.decode("utf-8", "replace").splitlines():
        sha, _, name = line.partition("\t")
        if _OBJECT_ID.fullmatch(sha) and name:
            refs[name] = sha
    return refs


async def _resolve(git: _Git, repo: str, tag: str, host: str) -> str:
    """The commit ``refs/tags/<tag>`` names on the server, by ``ls-remote``."""
    tag_ref = f"refs/tags/{tag}"
    result = await git.run("ls-remote", "--", repo, tag_ref, f"{tag_ref}^{{}}", f"refs/heads/{tag}")
    if result.returncode != 0:
        raise classify_git_error(result.stderr, result.returncode, "ls-remote", repo, host)
    return pick_commit(parse_ls_remote(result.stdout), tag, repo)


def pick_commit(refs: Mapping[str, str], tag: str, repo: str) -> str:
    """The object ``refs/tags/<tag>`` stands for: the peeled ``^{}`` entry of an annotated
    tag, else the tag's own entry. Never a branch: :class:`SourceRejected` when there is no
    such tag (saying so when a branch of that name exists)."""
    tag_ref = f"refs/tags/{tag}"
    commit = refs.get(f"{tag_ref}^{{}}") or refs.get(tag_ref)
    if commit is None:
        if f"refs/heads/{tag}" in refs:
            raise SourceRejected(
                f"repo {repo} has no tag {tag!r}; {tag!r} is a branch, and only tags can be used"
            )
        raise SourceRejected(f"repo {repo} has no tag {tag!r}")
    return commit


async def _fetch_and_archive(
    git: _Git,
    repo: str,
    tag: str,
    host: str,
    expected: str,
    workspace: Path,
    out: _Sink,
    cap: int,
) -> None:
    bare = workspace / "repo.git"
    tag_ref = f"refs/tags/{tag}"
    result = await git.run("init", "--bare", "--quiet", "--template=", str(bare))
    if result.returncode != 0:
        raise FetchFailed(f"git init failed: {scrub(result.stderr)}")
    env = dict(git.env, GIT_DIR=str(bare))
    env.pop("GIT_CEILING_DIRECTORIES", None)

    def too_big() -> str | None:
        size = _tree_size(bare)
        if size > cap:
            return f"git fetch of {repo}: the repository is larger than the cap of {cap} bytes"
        return None

    result = await git.run(
        "fetch",
        "--depth",
        "1",
        "--no-tags",
        "--no-write-fetch-head",
        "--no-recurse-submodules",
        "--",
        repo,
        f"+{tag_ref}:{tag_ref}",
        env=env,
        guard=too_big,
    )
    if result.returncode != 0:
        raise classify_git_error(result.stderr, result.returncode, "fetch", repo, host)
    result = await git.run(
        "rev-parse", "--verify", "--quiet", "--end-of-options", f"{tag_ref}^{{commit}}", env=env
    )
    commit = result.stdout.decode("ascii", "replace").strip()
    if result.returncode != 0 or not _OBJECT_ID.fullmatch(commit):
        raise SourceRejected(f"tag {tag!r} of {repo} does not point to a commit")
    if commit != expected:
        raise FetchFailed(
            f"tag {tag!r} of {repo} moved while it was fetched ({expected} was advertised, "
            f"{commit} was fetched); a retry resolves it again"
        )
    result = await git.run(
        "archive", "--format=tar", commit, env=env, stdout_to=out, stdout_cap=cap
    )
    if result.returncode != 0:
        raise FetchFailed(f"git archive of {commit} failed: {scrub(result.stderr)}")


async def fetch_git_tag(repo: str, tag: str, config: RunnerConfig, dest_dir: Path) -> GitSource:
    """Resolve ``tag`` of ``repo`` and write the ``git archive`` of its commit to ``dest_dir``
    (see the module docstring).

    Returns a :class:`GitSource` whose archive file in ``dest_dir`` belongs to the caller.

    Raises:
        InvalidDefinition: the tag name is not allowed.
        NotAllowed: scheme, URL form, allowlist, private address, or a redirect.
        SourceRejected: no such repository or tag (a branch is not a tag), credentials
            required, the tag is not a commit, the fetch is larger than the cap.
        UnsafeArchive: the archive is larger than the cap.
        FetchFailed: network, TLS or server error, the deadline passed, git is missing.
    """
    check_tag(tag)
    url = check_repo_url(repo, config)
    host = url.hostname or ""
    port = url.port or (443 if url.scheme.lower() == "https" else 80)
    binary = shutil.which("git")
    if binary is None:
        raise FetchFailed("git is not installed (no 'git' on PATH)")
    workspace = await asyncio.to_thread(_workspace_in, dest_dir)
    git: _Git | None = None
    try:
        async with asyncio.timeout(config.git_timeout):
            addresses = await resolve_checked(host, port, allow_private=config.allow_private_hosts)
            tag_ref = f"refs/tags/{tag}"
            refs = await ls_refs(
                url,
                [tag_ref, f"refs/heads/{tag}"],
                addresses=addresses,
                ca_file=config.ca_file,
                timeout=min(config.git_timeout, LS_REFS_TIMEOUT),
            )
            commit: str | None = None
            if refs is not None:
                commit = pick_commit(refs, tag, repo)
                found = await _from_cache(config, repo, tag, commit, dest_dir)
                if found is not None:
                    return found
            home = workspace / "home"
            await asyncio.to_thread(home.mkdir, parents=True, mode=0o700)
            ca_bundle, ca_dir = await asyncio.to_thread(trust_options, config.ca_file, workspace)
            git = _Git(
                binary=binary,
                env=git_env(home, allow_http=config.allow_http, ceiling=workspace.parent),
                options=git_config_args(
                    allow_http=config.allow_http,
                    ca_bundle=ca_bundle,
                    ca_dir=ca_dir,
                    resolve=curl_resolve_entry(host, port, addresses),
                ),
                cwd=workspace,
            )
            if commit is None:
                commit = await _resolve(git, repo, tag, host)
                found = await _from_cache(config, repo, tag, commit, dest_dir)
                if found is not None:
                    return found
            dest = dest_dir / f"git-{commit}.tar"
            sha256, size = await _fetch_to(git, repo, tag, host, commit, workspace, dest, config)
    except TimeoutError as exc:
        step = git.step if git is not None else "resolving the host"
        raise FetchFailed(
            f"git tag {tag!r} of {repo}: did not finish within {config.git_timeout:g} s "
            f"(during {step})"
        ) from exc
    finally:
        await asyncio.to_thread(shutil.rmtree, workspace, True)
    try:
        await asyncio.to_thread(_cache_store, config, repo, commit, dest, sha256)
    except OSError as exc:
        logger.warning("cannot cache the git archive", extra={"commit": commit, "error": str(exc)})
    logger.info("git source fetched", extra={"repo": repo, "tag": tag, "commit": commit})
    return GitSource(
        repo=repo,
        tag=tag,
        commit_sha=commit,
        archive_path=dest,
        archive_sha256=sha256,
        size=size,
    )


def _workspace_in(dest_dir: Path) -> Path:
    """A fresh name for the fetch's temporary directory in ``dest_dir`` (created).

    Absolute: git runs inside it, and relative paths given to git (``GIT_DIR``, the CA
    bundle, the discovery ceiling) would be read from there."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    return dest_dir.absolute() / f".git-{secrets.token_hex(8)}"


class _HashingFile:
    """A write-only file that hashes what is written to it."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.out.write(data)


async def _fetch_to(
    git: _Git,
    repo: str,
    tag: str,
    host: str,
    commit: str,
    workspace: Path,
    dest: Path,
    config: RunnerConfig,
) -> tuple[str, int]:
    tmp = workspace / "archive.tar.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as raw:
        out = _HashingFile(raw)
        await _fetch_and_archive(
            git, repo, tag, host, commit, workspace, out, archive_cap(config.archive_limits)
        )
    os.replace(tmp, dest)
    return out.digest.hexdigest(), out.size

"""Resolving a tag to the commit it names, without fetching anything.

Only the exact names ``refs/tags/T`` and ``refs/tags/T^{}`` count (:func:`pick_commit`: the
peeled commit of an annotated tag; the tag itself for a lightweight one), so a branch ``T``
is never used; when only a branch of that name exists the error says so
(:class:`SourceRejected`). The refs are asked for in one of two ways.

**One HTTPS request** (:func:`ls_refs`): git's smart-HTTP protocol v2 ``ls-refs``.

``git ls-remote`` costs a process, a TLS handshake and two requests (the capability
advertisement, then ``ls-refs``). Every run of a git-tag job resolves its tag, and on a rerun
of an unchanged tag that is all the fetch does, so :func:`ls_refs` asks the server directly:
one ``POST <repo>/git-upload-pack`` with ``Git-Protocol: version=2`` and the ``ls-refs``
command limited to the tag (and a branch of the same name, to say so when it is not a tag).

It is an optimisation, never a second set of rules: it runs only after the URL passed the
allowlist and scheme checks and the host's addresses passed the private-address check; it
connects to one of those checked addresses (the certificate is still verified for the host
name), trusts exactly what git would (the system bundle plus ``WORKER_JOB_CA_FILE``), reads
no proxy or ``.netrc`` settings from the environment, follows no redirect, and reads at
most :data:`MAX_RESPONSE_BYTES` within the time left. Whenever the answer is anything but a
clean protocol-v2 ref list (another status, a redirect, a server without v2, a malformed
line, a network error) it returns ``None`` and the caller asks ``git ls-remote``, whose
errors are classified as before.

**git ls-remote** (:func:`ls_remote_commit`):
``git ls-remote -- <url> refs/tags/T refs/tags/T^{} refs/heads/T`` (protocol v2: one
``info/refs`` GET and one ``ls-refs`` POST), run by
:class:`~jobrunner.sources.git.process.GitRunner`.
"""

from __future__ import annotations

import functools
import logging
import re
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import SplitResult

import httpx

from jobrunner.errors import SourceRejected
from jobrunner.sources.git.process import GitRunner, classify_git_error
from jobrunner.sources.netcheck import IPAddress

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 1024 * 1024
TIMEOUT_SECONDS = 10.0
"""Seconds the one-request lookup may take before ``git ls-remote`` is asked instead."""
OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
"""A SHA-1 or SHA-256 object name as git prints it."""


def pkt_line(data: str) -> bytes:
    """One pkt-line: four hex digits of length (themselves included), then ``data``."""
    raw = data.encode()
    return f"{len(raw) + 4:04x}".encode() + raw


def ls_refs_request(prefixes: Sequence[str]) -> bytes:
    """The body of a protocol-v2 ``ls-refs`` asking for the refs under ``prefixes``."""
    body = pkt_line("command=ls-refs\n") + pkt_line("agent=longshore\n") + b"0001"
    body += pkt_line("peel\n")
    for prefix in prefixes:
        body += pkt_line(f"ref-prefix {prefix}\n")
    return body + b"0000"


def parse_ls_refs(body: bytes) -> dict[str, str] | None:
    """``ref name -> object id`` (with ``<ref>^{}`` entries for peeled tags) from an
    ``ls-refs`` answer, or ``None`` when it is not one."""
    refs: dict[str, str] = {}
    position = 0
    while True:
        header = body[position : position + 4]
        if len(header) < 4:
            return None  # ended without a flush packet
        try:
            length = int(header, 16)
        except ValueError:
            return None
        if length == 0:
            return refs if position + 4 == len(body) else None
        if length < 4 or position + length > len(body):
            return None
        line = body[position + 4 : position + length].decode("utf-8", "replace").rstrip("\n")
        position += length
        oid, _, rest = line.partition(" ")
        name, *attributes = rest.split(" ")
        if not OBJECT_ID.fullmatch(oid) or not name.startswith("refs/"):
            return None
        refs[name] = oid
        for attribute in attributes:
            if attribute.startswith("peeled:"):
                peeled = attribute.removeprefix("peeled:")
                if not OBJECT_ID.fullmatch(peeled):
                    return None
                refs[f"{name}^{{}}"] = peeled


@functools.lru_cache(maxsize=8)
def _trust(ca_file: Path | None, ca_mtime: float) -> ssl.SSLContext:
    """The system's trust plus ``ca_file`` (cached: loading the bundle costs milliseconds)."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def _context(ca_file: Path | None) -> ssl.SSLContext:
    mtime = ca_file.stat().st_mtime if ca_file is not None else 0.0
    return _trust(ca_file, mtime)


async def ls_refs(
    url: SplitResult,
    prefixes: Sequence[str],
    *,
    addresses: Sequence[IPAddress],
    ca_file: Path | None,
    timeout: float = TIMEOUT_SECONDS,  # noqa: ASYNC109 - a budget passed on to httpx
) -> dict[str, str] | None:
    """The refs under ``prefixes`` of the https repository ``url``, asked of the first of
    its checked ``addresses``; ``None`` when this way does not give a clean answer (the
    caller then uses ``git ls-remote``)."""
    host = url.hostname
    if url.scheme.lower() != "https" or not host or not addresses:
        return None
    port = url.port or 443
    address = addresses[0]
    spelled = f"[{address}]" if address.version == 6 else str(address)
    target = f"https://{spelled}:{port}{url.path.rstrip('/')}/git-upload-pack"
    authority = host if port == 443 else f"{host}:{port}"
    headers = {
        "Host": authority,
        "Content-Type": "application/x-git-upload-pack-request",
        "Accept": "application/x-git-upload-pack-result",
        "Git-Protocol": "version=2",
        "User-Agent": "git/longshore",
    }
    try:
        context = _context(ca_file)
        async with (
            httpx.AsyncClient(
                verify=context,
                timeout=timeout,
                follow_redirects=False,
                trust_env=False,  # as git's scratch environment: no proxy, no .netrc
            ) as client,
            client.stream(
                "POST",
                target,
                headers=headers,
                content=ls_refs_request(prefixes),
                extensions={"sni_hostname": host},
            ) as response,
        ):
            if response.status_code != 200:
                return None
            kind = response.headers.get("content-type", "")
            if kind.split(";")[0].strip() != "application/x-git-upload-pack-result":
                return None
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    return None
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        logger.debug("ls-refs over https failed; using git", extra={"error": str(exc)})
        return None
    return parse_ls_refs(bytes(body))


def parse_ls_remote(output: bytes) -> dict[str, str]:
    """``ref name -> object id`` from ``git ls-remote`` output (malformed lines skipped)."""
    refs: dict[str, str] = {}
    for line in output.decode("utf-8", "replace").splitlines():
        sha, _, name = line.partition("\t")
        if OBJECT_ID.fullmatch(sha) and name:
            refs[name] = sha
    return refs


async def ls_remote_commit(git: GitRunner, repo: str, tag: str, host: str) -> str:
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

"""Fetching a git tag: the ``git archive`` of the commit it names, over HTTPS.

:func:`fetch_git_tag` turns ``(repo, tag)`` into a :class:`GitSource`: the resolved commit
SHA and a plain tar of that commit's tree (``git archive --format=tar <sha>``) in ``dest_dir``,
with its SHA256. The tar is untrusted like any other archive and goes through
:func:`jobrunner.archive.build_context_file` before it is built.

**Steps**, after the tag and the URL passed :mod:`jobrunner.sources.git.names` and every
address of the host passed :mod:`jobrunner.sources.netcheck` (unless
``allow_private_hosts``):

1. the tag is resolved without fetching anything (:mod:`jobrunner.sources.git.refs`): one
   protocol-v2 ``ls-refs`` request made directly to a checked address, or, when that gives
   no clean answer, ``git ls-remote``;
2. if the source archive of that commit from that repository is in the cache
   (:mod:`jobrunner.sources.git.cache`), it is copied out (and re-hashed): the run costs one
   ``ls-refs`` request, no git process, no fetch and no archive;
3. otherwise, in a fresh bare repository in a temporary directory under ``dest_dir``:
   ``git init --bare``, ``git fetch --depth 1 --no-tags -- <url> +refs/tags/T:refs/tags/T``
   (objects checked with ``transfer.fsckObjects``; the repository's size is watched and the
   fetch stopped past the archive cap, :func:`archive_cap`: the source byte cap
   ``WORKER_JOB_TARBALL_MAX_BYTES``), ``git rev-parse --verify refs/tags/T^{commit}``, which
   must equal what ``ls-remote`` said (else the tag moved meanwhile: :class:`FetchFailed`, a
   retry resolves it again), and ``git archive --format=tar <sha>`` streamed to a file with a
   byte cap. The temporary directory is removed whatever happens.

Every git process runs hardened (:mod:`jobrunner.sources.git.environment`) and in its own
process group (:mod:`jobrunner.sources.git.process`).

**Time**: everything, name resolution included, runs under one deadline, ``git_timeout``:
:class:`FetchFailed` naming the step that was running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from jobrunner.config import RunnerConfig
from jobrunner.errors import FetchFailed, SourceRejected
from jobrunner.hashing import HashingWriter
from jobrunner.sources.git.cache import cache_lookup, cache_store
from jobrunner.sources.git.environment import (
    curl_resolve_entry,
    git_config_args,
    git_env,
    trust_options,
)
from jobrunner.sources.git.names import check_repo_url, check_tag
from jobrunner.sources.git.process import GitRunner, Sink, classify_git_error, scrub
from jobrunner.sources.git.refs import (
    OBJECT_ID,
    TIMEOUT_SECONDS,
    ls_refs,
    ls_remote_commit,
    pick_commit,
)
from jobrunner.sources.netcheck import resolve_checked
from jobrunner.sources.tarball.verified import VerifiedTarball

__all__ = ["GitSource", "archive_cap", "fetch_git_tag"]

logger = logging.getLogger(__name__)


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


async def _from_cache(
    config: RunnerConfig, repo: str, tag: str, commit: str, dest_dir: Path
) -> GitSource | None:
    """The cached archive of ``commit``, copied to ``dest_dir`` (and re-hashed), if any."""
    dest = dest_dir / f"git-{commit}.tar"
    cached = await asyncio.to_thread(cache_lookup, config, repo, commit, dest)
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


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def archive_cap(config: RunnerConfig) -> int:
    """Largest ``git archive`` output (and fetched repository) accepted: the source byte cap
    (``tarball_max_bytes``, the cap of every source's bytes), and never more than the
    archive's total file-size cap plus room for tar headers (the same allowance as the
    archive reader's)."""
    limits = config.archive_limits
    # Per entry: a header, a PAX header for long names and padding; then the PAX global
    # header git writes (the commit id), the end-of-archive blocks and record padding.
    headers = limits.max_entries * 2048 + (1 << 20)
    return min(config.tarball_max_bytes, limits.max_total_bytes + headers)


async def _fetch_and_archive(
    git: GitRunner,
    repo: str,
    tag: str,
    host: str,
    expected: str,
    workspace: Path,
    out: Sink,
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
    if result.returncode != 0 or not OBJECT_ID.fullmatch(commit):
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
    git: GitRunner | None = None
    try:
        async with asyncio.timeout(config.git_timeout):
            addresses = await resolve_checked(host, port, allow_private=config.allow_private_hosts)
            tag_ref = f"refs/tags/{tag}"
            refs = await ls_refs(
                url,
                [tag_ref, f"refs/heads/{tag}"],
                addresses=addresses,
                ca_file=config.ca_file,
                timeout=min(config.git_timeout, TIMEOUT_SECONDS),
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
            git = GitRunner(
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
                commit = await ls_remote_commit(git, repo, tag, host)
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
        await asyncio.to_thread(cache_store, config, repo, commit, dest, sha256)
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


async def _fetch_to(
    git: GitRunner,
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
        out = HashingWriter(raw)
        await _fetch_and_archive(git, repo, tag, host, commit, workspace, out, archive_cap(config))
    os.replace(tmp, dest)
    return out.digest.hexdigest(), out.size

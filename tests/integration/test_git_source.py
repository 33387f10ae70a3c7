"""Git tag sources against real git served over HTTPS on loopback (``git_server``).

The server is ``git http-backend`` behind the ``trustme`` TLS test server; the client is the
real git binary driven by :func:`fetch_git_tag`. Refusals are asserted together with what a
user would check next: no request reached the server (for checks made before git runs),
nothing was left in the run directory, and no git process outlived the call.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from jobrunner.archive import build_context_file
from jobrunner.config import RunnerConfig, SourceLimits
from jobrunner.errors import (
    FetchFailed,
    InvalidDefinition,
    NotAllowed,
    SourceRejected,
    UnsafeArchive,
)
from jobrunner.sources.git.cache import git_cache_dir
from jobrunner.sources.git.environment import (
    git_config_args,
    git_env,
    system_ca_bundle,
    write_ca_bundle,
)
from jobrunner.sources.git.fetch import GitSource, fetch_git_tag
from jobrunner.sources.git.process import GitRunner
from tests.integration.git_server import GitServer, WorkRepo
from tests.integration.tls_server import Response, redirect

DOCKERFILE = b"FROM scratch\nCOPY . /\n"
FILES = {
    "Dockerfile": DOCKERFILE,
    "run.sh": b"#!/bin/sh\necho hello from v1\n",
    "docs/README": b"read me\n",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GitServer]:
    with GitServer(tmp_path / "srv") as running:
        yield running


@pytest.fixture
def repo(server: GitServer) -> WorkRepo:
    work = WorkRepo.create(server.root / "proj.git")
    work.commit(FILES, "first", executable=("run.sh",))
    work.tag("v1")
    work.tag("v1-annotated", annotated=True)
    server.serve("proj.git")
    return work


@pytest.fixture
def url(server: GitServer, repo: WorkRepo) -> str:
    return server.url("proj.git")


@pytest.fixture
def config(server: GitServer, tmp_path: Path) -> RunnerConfig:
    return RunnerConfig(
        work_dir=tmp_path / "work",
        repo_allowlist=(server.tls.url("/"),),
        ca_file=server.tls.write_ca(tmp_path / "ca.pem"),
        allow_private_hosts=True,
        git_timeout=20.0,
    )


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "run"


def tar_files(path: Path) -> dict[str, tuple[bytes, int]]:
    """name -> (content, mode) of the regular files of a tar."""
    found: dict[str, tuple[bytes, int]] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                found[member.name] = (extracted.read(), member.mode)
    return found


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def git_processes_for(port: int) -> list[str]:
    """Command lines of running processes that mention the server's port."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f":{port}/" in cmdline and "git" in cmdline and "pytest" not in cmdline:
            found.append(cmdline)
    return found


def assert_not_requested(server: GitServer) -> None:
    assert server.requests() == []


# --- fetches that work ---------------------------------------------------------------------


async def test_a_lightweight_tag_gives_its_commit_and_archive(
    repo: WorkRepo, url: str, config: RunnerConfig, dest: Path
) -> None:
    source = await fetch_git_tag(url, "v1", config, dest)
    assert isinstance(source, GitSource)
    assert source.commit_sha == repo.head()
    assert (source.repo, source.tag, source.from_cache) == (url, "v1", False)
    assert source.archive_path.parent == dest
    data = source.archive_path.read_bytes()
    assert source.archive_sha256 == hashlib.sha256(data).hexdigest()
    assert source.size == len(data)
    files = tar_files(source.archive_path)
    assert {name: content for name, (content, _mode) in files.items()} == FILES
    # Only the archive is left: the temporary bare repository is gone.
    assert leftovers(dest) == [source.archive_path.name]
    tarball = source.as_tarball()
    assert (tarball.path, tarball.sha256, tarball.origin) == (
        source.archive_path,
        source.archive_sha256,
        url,
    )


async def test_an_annotated_tag_resolves_to_the_commit_not_the_tag_object(
    repo: WorkRepo, url: str, config: RunnerConfig, dest: Path
) -> None:
    tag_object = repo.git("rev-parse", "refs/tags/v1-annotated")
    source = await fetch_git_tag(url, "v1-annotated", config, dest)
    assert source.commit_sha == repo.head()
    assert source.commit_sha != tag_object
    assert tar_files(source.archive_path)["run.sh"][0] == FILES["run.sh"]


async def test_exec_bits_survive_archive_and_build_context(
    url: str, config: RunnerConfig, dest: Path
) -> None:
    source = await fetch_git_tag(url, "v1", config, dest)
    context = build_context_file(source.archive_path, dest, config.archive_limits, None)
    with tarfile.open(context.path) as tar:
        assert tar.getmember("run.sh").mode == 0o755
        assert tar.getmember("Dockerfile").mode == 0o644
        assert tar.getmember("docs/README").mode == 0o644
    assert context.report.dockerfile == "Dockerfile"


async def test_an_unchanged_tag_is_served_from_the_cache_after_only_ls_remote(
    server: GitServer, url: str, config: RunnerConfig, tmp_path: Path
) -> None:
    first = await fetch_git_tag(url, "v1", config, tmp_path / "run1")
    assert server.commands() == ["ls-refs", "ls-refs", "fetch"]
    server.clear_log()
    second = await fetch_git_tag(url, "v1", config, tmp_path / "run2")
    assert second.from_cache
    assert second.commit_sha == first.commit_sha
    assert second.archive_sha256 == first.archive_sha256
    assert second.archive_path.read_bytes() == first.archive_path.read_bytes()
    # Resolving the tag is all that reached the server: one protocol-v2 ls-refs request
    # (no ref advertisement, no fetch).
    assert server.commands() == ["ls-refs"]
    assert [(r.method, r.path) for r in server.requests()] == [
        ("POST", "/proj.git/git-upload-pack")
    ]
    assert leftovers(tmp_path / "run2") == [second.archive_path.name]


async def test_moving_the_tag_gives_the_new_commit_and_archive(
    server: GitServer, repo: WorkRepo, url: str, config: RunnerConfig, tmp_path: Path
) -> None:
    first = await fetch_git_tag(url, "v1", config, tmp_path / "run1")
    new_commit = repo.commit(
        {"run.sh": b"#!/bin/sh\necho hello from v2\n"}, "second", executable=("run.sh",)
    )
    repo.tag("v1")  # moved (forced) to the new commit
    server.clear_log()
    moved = await fetch_git_tag(url, "v1", config, tmp_path / "run2")
    assert not moved.from_cache
    assert moved.commit_sha == new_commit != first.commit_sha
    assert moved.archive_sha256 != first.archive_sha256
    assert tar_files(moved.archive_path)["run.sh"] == (b"#!/bin/sh\necho hello from v2\n", 0o755)
    assert "fetch" in server.commands()


async def test_a_corrupted_cache_entry_is_fetched_again(
    server: GitServer, url: str, config: RunnerConfig, tmp_path: Path
) -> None:
    first = await fetch_git_tag(url, "v1", config, tmp_path / "run1")
    sha = first.archive_sha256
    entry = git_cache_dir(config) / "objects" / sha[:2] / sha
    entry.unlink()
    entry.write_bytes(b"tampered")
    server.clear_log()
    again = await fetch_git_tag(url, "v1", config, tmp_path / "run2")
    assert not again.from_cache
    assert again.archive_path.read_bytes() == first.archive_path.read_bytes()
    assert "fetch" in server.commands()


async def test_a_tag_wins_over_a_branch_of_the_same_name(
    repo: WorkRepo, url: str, config: RunnerConfig, dest: Path
) -> None:
    tagged = repo.head()
    repo.commit({"branch-only.txt": b"on the branch\n"}, "branch work")
    repo.branch("release")
    repo.tag("release", target=tagged)
    source = await fetch_git_tag(url, "release", config, dest)
    assert source.commit_sha == tagged
    assert "branch-only.txt" not in tar_files(source.archive_path)


async def test_a_host_name_is_pinned_to_its_checked_addresses(
    server: GitServer, repo: WorkRepo, config: RunnerConfig, dest: Path
) -> None:
    by_name = server.url("proj.git", host="localhost")
    config = replace(config, repo_allowlist=(by_name,))
    source = await fetch_git_tag(by_name, "v1", config, dest)
    assert source.commit_sha == repo.head()
    assert {r.host.split(":")[0] for r in server.requests()} == {"localhost"}


async def test_a_relative_run_directory_works(
    repo: WorkRepo, url: str, config: RunnerConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    source = await fetch_git_tag(url, "v1", config, Path("relative-run"))
    assert source.commit_sha == repo.head()
    assert leftovers(tmp_path / "relative-run") == [source.archive_path.name]


# --- refused: the source is not acceptable -------------------------------------------------


async def test_a_branch_name_without_such_a_tag_is_rejected(
    server: GitServer, repo: WorkRepo, url: str, config: RunnerConfig, dest: Path
) -> None:
    repo.branch("feature")
    with pytest.raises(SourceRejected, match=r"'feature' is a branch, and only tags"):
        await fetch_git_tag(url, "feature", config, dest)
    assert server.commands() == ["ls-refs"]  # nothing was fetched
    assert leftovers(dest) == []


async def test_a_missing_tag_is_rejected(
    url: str, server: GitServer, config: RunnerConfig, dest: Path
) -> None:
    with pytest.raises(SourceRejected, match=r"has no tag 'v9'"):
        await fetch_git_tag(url, "v9", config, dest)
    assert leftovers(dest) == []


async def test_a_missing_repository_is_rejected(
    server: GitServer, repo: WorkRepo, config: RunnerConfig, dest: Path
) -> None:
    with pytest.raises(SourceRejected, match="repository not found"):
        await fetch_git_tag(server.url("nope.git"), "v1", config, dest)
    assert leftovers(dest) == []


async def test_a_tag_of_a_tree_is_rejected(
    repo: WorkRepo, url: str, config: RunnerConfig, dest: Path
) -> None:
    repo.tag("tree", target="HEAD^{tree}")
    with pytest.raises(SourceRejected, match="does not point to a commit"):
        await fetch_git_tag(url, "tree", config, dest)
    assert leftovers(dest) == []


async def test_a_repository_over_the_cap_is_refused(
    repo: WorkRepo, url: str, config: RunnerConfig, dest: Path
) -> None:
    repo.commit({"big.bin": os.urandom(3 << 20)}, "big")
    repo.tag("big")
    config = replace(config, archive_limits=SourceLimits(max_entries=10, max_total_bytes=1 << 16))
    with pytest.raises((SourceRejected, UnsafeArchive), match="larger than the cap"):
        await fetch_git_tag(url, "big", config, dest)
    assert leftovers(dest) == []


async def test_an_archive_over_the_cap_is_refused(
    repo: WorkRepo, url: str, config: RunnerConfig, dest: Path
) -> None:
    # Zeros compress to almost nothing: the fetch is small, the archive is not.
    repo.commit({"zeros.bin": bytes(3 << 20)}, "zeros")
    repo.tag("zeros")
    config = replace(config, archive_limits=SourceLimits(max_entries=10, max_total_bytes=1 << 16))
    with pytest.raises(UnsafeArchive, match="git archive output is larger than the cap"):
        await fetch_git_tag(url, "zeros", config, dest)
    assert leftovers(dest) == []


async def test_an_archive_over_the_source_byte_cap_is_refused(
    repo: WorkRepo, url: str, config: RunnerConfig, dest: Path
) -> None:
    # The archive limits allow it; the source byte cap (WORKER_JOB_TARBALL_MAX_BYTES) does not.
    repo.commit({"zeros.bin": bytes(3 << 20)}, "over-source-cap")
    repo.tag("over-source-cap")
    config = replace(config, tarball_max_bytes=1 << 20)
    with pytest.raises(UnsafeArchive, match=f"larger than the cap of {1 << 20} bytes"):
        await fetch_git_tag(url, "over-source-cap", config, dest)
    assert leftovers(dest) == []


async def test_a_guard_stops_a_running_git_at_once(
    server: GitServer, repo: WorkRepo, tmp_path: Path
) -> None:
    server.tls.routes["/hang.git/info/refs"] = Response(body=[b"never"], delay=60)
    home = tmp_path / "home"
    home.mkdir()
    ca = server.tls.write_ca(tmp_path / "ca.pem")
    runner = GitRunner(
        binary="git", env=git_env(home), options=git_config_args(ca_bundle=ca), cwd=tmp_path
    )
    started = time.monotonic()
    with pytest.raises(SourceRejected, match="too big"):
        await runner.run("ls-remote", "--", server.url("hang.git"), guard=lambda: "too big")
    assert time.monotonic() - started < 3
    assert git_processes_for(server.tls.port) == []


# --- refused before git runs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    [
        "--upload-pack=touch /tmp/pwned",
        "-u",
        "-uevil",
        "../x",
        "a..b",
        "v1 ",
        "v1\n",
        "v1~1",
        "v1^{}",
        "v1:x",
        "v*",
        "v1@{0}",
        "v1.lock",
        "v1/",
        "",
        "x" * 129,
    ],
)
async def test_unsafe_tag_names_are_refused_before_git_runs(
    server: GitServer, url: str, config: RunnerConfig, dest: Path, tag: str
) -> None:
    with pytest.raises(InvalidDefinition, match="tag"):
        await fetch_git_tag(url, tag, config, dest)
    assert_not_requested(server)
    assert not Path("/tmp/pwned").exists()
    assert leftovers(dest) == []


@pytest.mark.parametrize(
    ("make_url", "message"),
    [
        (lambda s: s.url("other.git"), "not in the repository allowlist"),
        (lambda s: s.url("proj.git").replace("https://", "http://"), "plain http is not allowed"),
        (lambda s: "file:///tmp/srv/proj.git", "scheme 'file' is not allowed"),
        (lambda s: "ext::sh -c touch% /tmp/pwned", "spaces"),
        (lambda s: "ext::sh", "scheme 'ext' is not allowed"),
        (lambda s: "https::" + s.url("proj.git"), "absolute https:// URL"),
        (lambda s: s.url("proj.git").replace("https://", "https://user:secret@"), "credentials"),
        (lambda s: s.url("proj.git").replace("https://", "https://token@"), "credentials"),
        (lambda s: s.url("team/../proj.git"), "'..'"),
        (lambda s: s.url("team/%2e%2e/proj.git"), "encoded"),
        (lambda s: s.url("proj.git") + "?x=1", "query"),
        (lambda s: "/srv/proj.git", "scheme '' is not allowed"),
        (lambda s: "-uevil", "scheme '' is not allowed"),
    ],
)
async def test_unsafe_repositories_are_refused_before_git_runs(
    server: GitServer,
    repo: WorkRepo,
    config: RunnerConfig,
    dest: Path,
    make_url: Callable[[GitServer], str],
    message: str,
) -> None:
    config = replace(config, repo_allowlist=(server.url("proj.git"),))
    with pytest.raises(NotAllowed, match=message):
        await fetch_git_tag(make_url(server), "v1", config, dest)
    assert_not_requested(server)
    assert not Path("/tmp/pwned").exists()


async def test_a_private_address_is_refused_unless_allowed(
    server: GitServer, url: str, config: RunnerConfig, dest: Path
) -> None:
    with pytest.raises(NotAllowed, match="WORKER_JOB_ALLOW_PRIVATE_HOSTS is off"):
        await fetch_git_tag(url, "v1", replace(config, allow_private_hosts=False), dest)
    by_name = server.url("proj.git", host="localhost")
    with pytest.raises(NotAllowed, match="resolves to address"):
        await fetch_git_tag(
            by_name, "v1", replace(config, allow_private_hosts=False, repo_allowlist=("*",)), dest
        )
    assert_not_requested(server)


# --- refused by the server's answers -------------------------------------------------------


async def test_a_redirect_to_another_host_is_not_followed(
    server: GitServer, repo: WorkRepo, config: RunnerConfig, dest: Path
) -> None:
    elsewhere = server.url("proj.git", host="localhost") + "/info/refs?service=git-upload-pack"
    server.tls.routes["/moved.git/info/refs"] = redirect(elsewhere)
    with pytest.raises(NotAllowed, match=r"redirect \(HTTP 302\); redirects are not followed"):
        await fetch_git_tag(server.url("moved.git"), "v1", config, dest)
    # The one-request lookup got no ref list (404) and git, asked next, met the redirect.
    assert [r.path for r in server.requests()] == [
        "/moved.git/git-upload-pack",
        "/moved.git/info/refs",
    ]
    assert leftovers(dest) == []


async def test_a_hanging_server_fails_within_the_timeout_and_leaves_no_process(
    server: GitServer, repo: WorkRepo, config: RunnerConfig, dest: Path
) -> None:
    server.tls.routes["/hang.git/info/refs"] = Response(body=[b"never"], delay=60)
    started = time.monotonic()
    with pytest.raises(FetchFailed, match=r"did not finish within 1 s \(during ls-remote\)"):
        await fetch_git_tag(server.url("hang.git"), "v1", replace(config, git_timeout=1.0), dest)
    assert time.monotonic() - started < 5
    assert git_processes_for(server.tls.port) == []
    assert leftovers(dest) == []


async def test_a_cancelled_fetch_kills_git(
    server: GitServer, repo: WorkRepo, config: RunnerConfig, dest: Path
) -> None:
    server.tls.routes["/hang.git/info/refs"] = Response(body=[b"never"], delay=60)
    task = asyncio.create_task(fetch_git_tag(server.url("hang.git"), "v1", config, dest))
    # The tag lookup may first ask the server itself (one ls-refs request) before git runs:
    # wait for git to be there, hanging on the server.
    for _ in range(200):
        await asyncio.sleep(0.05)
        if git_processes_for(server.tls.port):
            break
    assert git_processes_for(server.tls.port) != []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert git_processes_for(server.tls.port) == []
    assert leftovers(dest) == []


async def test_an_untrusted_certificate_is_a_clear_fetch_failure(
    server: GitServer, url: str, config: RunnerConfig, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service's own environment must not weaken git: git turns certificate checks off
    # when GIT_SSL_NO_VERIFY is set at all, so it must never be inherited.
    monkeypatch.setenv("GIT_SSL_NO_VERIFY", "1")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'http.sslVerify'='false'")
    with pytest.raises(FetchFailed, match=r"not trusted.*WORKER_JOB_CA_FILE"):
        await fetch_git_tag(url, "v1", replace(config, ca_file=None), dest)
    assert leftovers(dest) == []


def test_the_ca_bundle_adds_to_the_system_bundle(tmp_path: Path) -> None:
    extra = tmp_path / "extra.pem"
    extra.write_bytes(b"-----BEGIN CERTIFICATE-----\nEXTRA\n-----END CERTIFICATE-----\n")
    bundle = write_ca_bundle(extra, tmp_path / "bundle.pem").read_bytes()
    system = system_ca_bundle()
    assert system is not None, "this machine has a system CA bundle"
    assert bundle.startswith(system.read_bytes().rstrip(b"\n"))
    assert bundle.endswith(extra.read_bytes())


def test_a_missing_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FetchFailed, match="WORKER_JOB_CA_FILE"):
        write_ca_bundle(tmp_path / "missing.pem", tmp_path / "bundle.pem")


async def test_a_redirect_of_the_one_request_lookup_is_not_followed_either(
    server: GitServer, repo: WorkRepo, config: RunnerConfig, dest: Path
) -> None:
    elsewhere = server.url("proj.git", host="localhost")
    server.tls.routes["/moved.git/git-upload-pack"] = redirect(elsewhere + "/git-upload-pack")
    server.tls.routes["/moved.git/info/refs"] = redirect(
        elsewhere + "/info/refs?service=git-upload-pack"
    )
    with pytest.raises(NotAllowed, match=r"redirect \(HTTP 302\); redirects are not followed"):
        await fetch_git_tag(server.url("moved.git"), "v1", config, dest)
    assert [r.path for r in server.requests()] == [
        "/moved.git/git-upload-pack",
        "/moved.git/info/refs",
    ]
    assert leftovers(dest) == []

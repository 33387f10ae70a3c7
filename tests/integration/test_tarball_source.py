"""Tarball sources against a real HTTPS server on loopback (``tls_server``) and real files.

Every refusal is asserted together with what a user would check next: that nothing was
left behind in the run directory or the download cache, and (where it matters) that no
request reached the server at all.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import tarfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from jobrunner.archive import build_context_file
from jobrunner.config import RunnerConfig
from jobrunner.errors import (
    ChecksumMismatch,
    FetchFailed,
    InvalidDefinition,
    NotAllowed,
    SourceRejected,
)
from jobrunner.sources.tarball.download import cache_dir, fetch_tarball_url
from jobrunner.sources.tarball.local import resolve_tarball_path
from tests.integration.tls_server import Response, TLSServer, redirect, trickle

DOCKERFILE = b"FROM scratch\nCOPY . /\n"


def make_tarball() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data, mode in (
            ("proj-1.0/Dockerfile", DOCKERFILE, 0o644),
            ("proj-1.0/run.sh", b"#!/bin/sh\necho ok\n", 0o755),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


TARBALL = make_tarball()
SHA = hashlib.sha256(TARBALL).hexdigest()


@pytest.fixture
def server() -> Iterator[TLSServer]:
    with TLSServer({"/proj.tar.gz": TARBALL}) as running:
        yield running


@pytest.fixture
def config(server: TLSServer, tmp_path: Path) -> RunnerConfig:
    return RunnerConfig(
        work_dir=tmp_path / "work",
        tarball_allowlist=("127.0.0.1",),
        ca_file=server.write_ca(tmp_path / "ca.pem"),
        allow_private_hosts=True,
        tarball_timeout=10.0,
        tarball_max_bytes=1 << 20,
    )


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "run"


def leftovers(config: RunnerConfig, dest: Path) -> list[str]:
    """Every file left in the run directory and the download cache."""
    found: list[str] = []
    for root in (dest, cache_dir(config)):
        if root.exists():
            found += [str(p) for p in root.rglob("*") if p.is_file()]
    return found


# --- downloads that work -------------------------------------------------------------------


async def test_a_pinned_tarball_downloads_verifies_and_builds_a_context(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    tarball = await fetch_tarball_url(server.url("/proj.tar.gz"), SHA, config, dest)
    assert tarball.sha256 == SHA
    assert tarball.size == len(TARBALL)
    assert tarball.path.parent == dest
    assert tarball.path.read_bytes() == TARBALL
    assert not tarball.from_cache
    context = build_context_file(tarball.path, dest, config.archive_limits, None)
    with tarfile.open(context.path) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "run.sh"]
        assert tar.getmember("run.sh").mode == 0o755


async def test_a_cached_pinned_tarball_is_used_without_a_request(
    server: TLSServer, config: RunnerConfig, tmp_path: Path
) -> None:
    await fetch_tarball_url(server.url("/proj.tar.gz"), SHA, config, tmp_path / "run1")
    assert server.request_paths() == ["/proj.tar.gz"]
    server.routes.clear()  # the server no longer has it: only the cache can answer
    again = await fetch_tarball_url(
        server.url("/proj.tar.gz"), SHA.upper(), config, tmp_path / "run2"
    )
    assert again.from_cache
    assert again.sha256 == SHA
    assert again.path.read_bytes() == TARBALL
    assert server.request_paths() == ["/proj.tar.gz"]


async def test_a_corrupted_cache_entry_is_fetched_again(
    server: TLSServer, config: RunnerConfig, tmp_path: Path
) -> None:
    await fetch_tarball_url(server.url("/proj.tar.gz"), SHA, config, tmp_path / "run1")
    entry = cache_dir(config) / SHA[:2] / SHA
    entry.unlink()
    entry.write_bytes(b"tampered")
    again = await fetch_tarball_url(server.url("/proj.tar.gz"), SHA, config, tmp_path / "run2")
    assert not again.from_cache
    assert again.path.read_bytes() == TARBALL
    assert entry.read_bytes() == TARBALL
    assert len(server.requests) == 2


async def test_an_unpinned_tarball_records_the_sha256_it_received(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    tarball = await fetch_tarball_url(server.url("/proj.tar.gz"), None, config, dest)
    assert tarball.sha256 == SHA
    assert (cache_dir(config) / SHA[:2] / SHA).read_bytes() == TARBALL


async def test_a_redirect_to_an_allowlisted_host_is_followed(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    server.routes["/latest"] = redirect(server.url("/proj.tar.gz", host="localhost"), 301)
    config = replace(config, tarball_allowlist=("127.0.0.1", "LOCALHOST"))
    tarball = await fetch_tarball_url(server.url("/latest"), SHA, config, dest)
    assert tarball.final_url == server.url("/proj.tar.gz", host="localhost")
    assert [r.host for r in server.requests] == [
        f"127.0.0.1:{server.port}",
        f"localhost:{server.port}",
    ]


# --- refusals ------------------------------------------------------------------------------


async def test_a_wrong_sha256_is_refused_and_nothing_is_kept(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    with pytest.raises(ChecksumMismatch, match=f"expected {'0' * 64}"):
        await fetch_tarball_url(server.url("/proj.tar.gz"), "0" * 64, config, dest)
    assert leftovers(config, dest) == []


async def test_a_malformed_sha256_is_refused_before_any_request(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    with pytest.raises(InvalidDefinition, match="tarballSha256"):
        await fetch_tarball_url(server.url("/proj.tar.gz"), "../../etc/passwd", config, dest)
    assert server.requests == []


async def test_a_host_not_in_the_allowlist_is_refused_before_any_request(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    with pytest.raises(NotAllowed, match="'localhost' is not in the allowlist"):
        await fetch_tarball_url(server.url("/proj.tar.gz", host="localhost"), SHA, config, dest)
    assert server.requests == []
    assert leftovers(config, dest) == []


async def test_a_cached_tarball_is_still_refused_when_its_host_is_no_longer_allowed(
    server: TLSServer, config: RunnerConfig, tmp_path: Path
) -> None:
    await fetch_tarball_url(server.url("/proj.tar.gz"), SHA, config, tmp_path / "run1")
    stricter = replace(config, tarball_allowlist=("example.org",))
    with pytest.raises(NotAllowed):
        await fetch_tarball_url(server.url("/proj.tar.gz"), SHA, stricter, tmp_path / "run2")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/proj.tar.gz", "ftp://127.0.0.1/proj.tar.gz", "file:///etc/passwd"],
)
async def test_schemes_other_than_https_are_refused(
    url: str, config: RunnerConfig, dest: Path
) -> None:
    with pytest.raises(NotAllowed, match="scheme"):
        await fetch_tarball_url(url, SHA, config, dest)


async def test_credentials_in_the_url_are_refused(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    url = server.url("/proj.tar.gz").replace("https://", "https://user:secret@")
    with pytest.raises(NotAllowed, match="credentials"):
        await fetch_tarball_url(url, SHA, config, dest)
    assert server.requests == []


async def test_a_redirect_to_a_host_not_in_the_allowlist_is_refused(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    server.routes["/latest"] = redirect(server.url("/proj.tar.gz", host="localhost"))
    with pytest.raises(NotAllowed, match=r"redirect to .*'localhost' is not in the allowlist"):
        await fetch_tarball_url(server.url("/latest"), SHA, config, dest)
    assert server.request_paths() == ["/latest"]
    assert leftovers(config, dest) == []


async def test_a_redirect_to_plain_http_is_refused(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    server.routes["/latest"] = redirect(server.url("/proj.tar.gz", scheme="http"))
    with pytest.raises(NotAllowed, match="scheme 'http'"):
        await fetch_tarball_url(server.url("/latest"), SHA, config, dest)
    assert server.request_paths() == ["/latest"]


async def test_endless_redirects_are_refused(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    server.routes["/loop"] = redirect("/loop", 307)
    with pytest.raises(SourceRejected, match="redirects more than 5 times"):
        await fetch_tarball_url(server.url("/loop"), SHA, config, dest)
    assert len(server.requests) == 6


async def test_a_download_over_the_byte_cap_is_refused_while_streaming(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    # No Content-Length: only counting the bytes as they arrive can stop it.
    chunk = b"\0" * 65536
    server.routes["/huge"] = Response(body=[chunk] * 64, chunked=True)  # 4 MiB > 1 MiB cap
    with pytest.raises(SourceRejected, match="larger than the cap of 1048576 bytes"):
        await fetch_tarball_url(server.url("/huge"), None, config, dest)
    assert leftovers(config, dest) == []


async def test_a_download_declaring_more_than_the_cap_is_refused_at_once(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    server.routes["/huge"] = b"\0" * (2 << 20)
    with pytest.raises(SourceRejected, match="is 2097152 bytes, larger than the cap"):
        await fetch_tarball_url(server.url("/huge"), None, config, dest)
    assert leftovers(config, dest) == []


async def test_a_server_too_slow_for_the_deadline_is_given_up(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    # One byte every 50 ms: each read is "making progress", only the overall deadline helps.
    server.routes["/slow"] = trickle(TARBALL[:200], delay=0.05)
    config = replace(config, tarball_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(FetchFailed, match=r"did not finish within 0\.5 s"):
        await fetch_tarball_url(server.url("/slow"), None, config, dest)
    assert time.monotonic() - started < 5.0, "stopped by the deadline, not by the server"
    assert leftovers(config, dest) == []


async def test_a_private_address_is_refused_unless_allowed(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    strict = replace(config, allow_private_hosts=False, tarball_allowlist=("*",))
    with pytest.raises(NotAllowed, match=r"127.0.0.1 is loopback"):
        await fetch_tarball_url(server.url("/proj.tar.gz"), SHA, strict, dest)
    with pytest.raises(NotAllowed, match=r"'localhost' resolves to address 127.0.0.1"):
        await fetch_tarball_url(server.url("/proj.tar.gz", host="localhost"), SHA, strict, dest)
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
        "https://10.1.2.3/x.tar.gz",  # private
        "https://[::ffff:127.0.0.1]/x.tar.gz",  # loopback dressed as IPv6
        "https://[::1]/x.tar.gz",
        "https://[::127.0.0.1]/x.tar.gz",  # IPv4-compatible loopback
        "https://[::ffff:0:127.0.0.1]/x.tar.gz",  # SIIT loopback
        "https://[64:ff9b:1::a00:1]/x.tar.gz",  # local-use NAT64
        "https://[fec0::1]/x.tar.gz",  # site-local
        "https://0.0.0.0/x.tar.gz",  # unspecified
        "https://224.0.0.1/x.tar.gz",  # multicast
    ],
)
async def test_non_public_address_literals_are_refused(
    url: str, config: RunnerConfig, dest: Path
) -> None:
    strict = replace(config, allow_private_hosts=False, tarball_allowlist=("*",))
    with pytest.raises(NotAllowed, match="not public"):
        await fetch_tarball_url(url, SHA, strict, dest)


async def test_an_untrusted_certificate_is_a_fetch_failure(
    server: TLSServer, config: RunnerConfig, dest: Path
) -> None:
    with pytest.raises(FetchFailed, match="CERTIFICATE_VERIFY_FAILED"):
        await fetch_tarball_url(
            server.url("/proj.tar.gz"), SHA, replace(config, ca_file=None), dest
        )
    assert leftovers(config, dest) == []


async def test_the_certificate_is_checked_for_the_host_name_not_the_address(
    tmp_path: Path, dest: Path
) -> None:
    # We connect to the checked address, but TLS must still verify the name in the URL.
    with TLSServer({"/proj.tar.gz": TARBALL}, names=["127.0.0.1"]) as only_ip:
        config = RunnerConfig(
            work_dir=tmp_path / "work",
            tarball_allowlist=("localhost", "127.0.0.1"),
            ca_file=only_ip.write_ca(tmp_path / "ca.pem"),
            allow_private_hosts=True,
        )
        with pytest.raises(FetchFailed, match="localhost"):
            await fetch_tarball_url(
                only_ip.url("/proj.tar.gz", host="localhost"), SHA, config, dest
            )
        tarball = await fetch_tarball_url(only_ip.url("/proj.tar.gz"), SHA, config, dest)
        assert tarball.sha256 == SHA


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, SourceRejected), (403, SourceRejected), (503, FetchFailed), (429, FetchFailed)],
)
async def test_http_errors_are_permanent_or_transient(
    server: TLSServer, config: RunnerConfig, dest: Path, status: int, error: type[Exception]
) -> None:
    server.routes["/err"] = Response(status=status, body=b"no")
    with pytest.raises(error, match=f"HTTP {status}"):
        await fetch_tarball_url(server.url("/err"), SHA, config, dest)
    assert leftovers(config, dest) == []


async def test_concurrent_fetches_of_the_same_tarball_both_succeed(
    server: TLSServer, config: RunnerConfig, tmp_path: Path
) -> None:
    first, second = await asyncio.gather(
        fetch_tarball_url(server.url("/proj.tar.gz"), SHA, config, tmp_path / "a"),
        fetch_tarball_url(server.url("/proj.tar.gz"), SHA, config, tmp_path / "b"),
    )
    assert first.path.read_bytes() == second.path.read_bytes() == TARBALL


# --- tarball paths -------------------------------------------------------------------------


@pytest.fixture
def tarball_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tarballs"
    (root / "team").mkdir(parents=True)
    (root / "team" / "proj.tar.gz").write_bytes(TARBALL)
    return root


@pytest.fixture
def path_config(tmp_path: Path, tarball_dir: Path) -> RunnerConfig:
    return RunnerConfig(work_dir=tmp_path / "work", tarball_dir=tarball_dir)


def test_a_tarball_path_is_verified_and_copied(path_config: RunnerConfig, dest: Path) -> None:
    tarball = resolve_tarball_path("team/proj.tar.gz", SHA, path_config, dest)
    assert tarball.sha256 == SHA
    assert tarball.path.parent == dest
    assert tarball.path.read_bytes() == TARBALL
    in_place = resolve_tarball_path("./team//proj.tar.gz", None, path_config)
    assert in_place.sha256 == SHA
    assert in_place.path == path_config.tarball_dir / "team" / "proj.tar.gz"  # type: ignore[operator]


def test_a_tarball_path_with_a_wrong_sha256_is_refused(
    path_config: RunnerConfig, dest: Path
) -> None:
    with pytest.raises(ChecksumMismatch):
        resolve_tarball_path("team/proj.tar.gz", "f" * 64, path_config, dest)
    with pytest.raises(ChecksumMismatch):
        resolve_tarball_path("team/proj.tar.gz", "f" * 64, path_config)
    assert not dest.exists() or list(dest.iterdir()) == []


@pytest.mark.parametrize(
    "relative",
    ["../outside.tar.gz", "team/../../outside.tar.gz", "/etc/passwd", "", "team/\0x"],
)
def test_a_tarball_path_escaping_by_name_is_refused(
    relative: str, path_config: RunnerConfig, tmp_path: Path
) -> None:
    (tmp_path / "outside.tar.gz").write_bytes(TARBALL)
    with pytest.raises(NotAllowed):
        resolve_tarball_path(relative, None, path_config)


def test_a_tarball_path_escaping_by_symlink_is_refused(
    path_config: RunnerConfig, tarball_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside.tar.gz").write_bytes(TARBALL)
    (tarball_dir / "team" / "file-link.tar.gz").symlink_to(tmp_path / "outside.tar.gz")
    (tarball_dir / "dir-link").symlink_to(tmp_path)
    with pytest.raises(NotAllowed, match="outside the tarball dir"):
        resolve_tarball_path("team/file-link.tar.gz", None, path_config)
    with pytest.raises(NotAllowed, match="outside the tarball dir"):
        resolve_tarball_path("dir-link/outside.tar.gz", None, path_config)


def test_a_hard_linked_tarball_path_is_refused(
    path_config: RunnerConfig, tarball_dir: Path, tmp_path: Path, dest: Path
) -> None:
    # A hard link made into the tarball dir reads a file that lives outside it.
    (tmp_path / "outside.tar.gz").write_bytes(TARBALL)
    os.link(tmp_path / "outside.tar.gz", tarball_dir / "team" / "linked.tar.gz")
    with pytest.raises(NotAllowed, match="2 hard links"):
        resolve_tarball_path("team/linked.tar.gz", None, path_config, dest)
    with pytest.raises(NotAllowed, match="hard links"):
        resolve_tarball_path("team/linked.tar.gz", SHA, path_config)
    assert not dest.exists() or list(dest.iterdir()) == []


def test_a_symlink_staying_inside_the_tarball_dir_is_followed(
    path_config: RunnerConfig, tarball_dir: Path
) -> None:
    (tarball_dir / "current.tar.gz").symlink_to("team/proj.tar.gz")
    assert resolve_tarball_path("current.tar.gz", SHA, path_config).sha256 == SHA


def test_tarball_paths_that_are_not_regular_files_are_refused(
    path_config: RunnerConfig, tarball_dir: Path
) -> None:
    os.mkfifo(tarball_dir / "pipe")
    with pytest.raises(SourceRejected, match="not a regular file"):
        resolve_tarball_path("pipe", None, path_config)
    with pytest.raises(SourceRejected, match="not a regular file"):
        resolve_tarball_path("team", None, path_config)
    with pytest.raises(SourceRejected, match="no such file"):
        resolve_tarball_path("team/missing.tar.gz", None, path_config)


def test_a_tarball_path_larger_than_the_cap_is_refused(
    path_config: RunnerConfig, dest: Path
) -> None:
    small = replace(path_config, tarball_max_bytes=100)
    with pytest.raises(SourceRejected, match="larger than the cap"):
        resolve_tarball_path("team/proj.tar.gz", None, small, dest)
    assert list(dest.iterdir()) == []


def test_tarball_paths_are_off_without_a_tarball_dir(tmp_path: Path) -> None:
    with pytest.raises(NotAllowed, match="WORKER_JOB_TARBALL_DIR"):
        resolve_tarball_path("proj.tar.gz", None, RunnerConfig(work_dir=tmp_path))

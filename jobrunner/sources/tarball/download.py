"""Tarballs from an HTTPS URL (:func:`fetch_tarball_url`), every rule checked on every
redirect hop:

- ``https`` only (``http`` only with ``allow_http``); no credentials in the URL;
- the host is in ``tarball_allowlist`` and every address it resolves to is public unless
  ``allow_private_hosts`` (:mod:`jobrunner.sources.netcheck`). The name is resolved once and
  the connection goes to the checked address (the URL's host becomes the ``Host`` header and
  the TLS server name, so the certificate is still verified for the name): a DNS answer that
  changes between the check and the connection (rebinding) cannot send us elsewhere;
- redirects are followed by us, at most ``tarball_max_redirects``; httpx never follows them,
  never reads proxy settings or ``.netrc`` from the environment (``trust_env=False``) and never
  keeps a connection for a second request (a connection verified for one name is not reused
  for another that shares the address);
- the body is read raw (``Accept-Encoding: identity``; a ``Content-Encoding`` is not undone, so
  the hash is over the exact bytes received) and streamed to a file in ``dest_dir``, stopping
  as soon as more than ``tarball_max_bytes`` have arrived (or at once when ``Content-Length``
  says so): :class:`SourceRejected`, and the partial file is removed;
- the whole download (resolution, connections, redirects, a slow trickle of bytes) runs under
  one deadline, ``tarball_timeout``: :class:`FetchFailed`, worth a retry;
- TLS trusts the system's CAs plus ``ca_file`` when set (added, not replacing them).

A pinned SHA256 is optional here, as in the design this comes from ("validated when
provided"; the ``tarball_url`` source type requires one): when it is given, a mismatch is a
:class:`ChecksumMismatch` and nothing is kept; when it is not, the computed SHA256 is returned
so the run records what it used (``sourceSha256``). Pinning is what makes a source
reproducible and cacheable: a verified download is stored in the content-addressed
:class:`~jobrunner.cache.DownloadCache`, and a fetch pinned to a SHA256 found there makes no
network request (the URL is still checked against the scheme and the allowlist, which may have
changed since). HTTP 4xx answers other than 408/425/429 are permanent
(:class:`SourceRejected`); 5xx, those three and network errors are transient
(:class:`FetchFailed`), as is a TLS failure (the certificate may be renewed).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from jobrunner.cache import DownloadCache, normalise_sha256, remove_quietly
from jobrunner.config import RunnerConfig
from jobrunner.errors import ChecksumMismatch, FetchFailed, NotAllowed, SourceRejected
from jobrunner.sources.netcheck import (
    IPAddress,
    check_host_allowed,
    check_scheme,
    resolve_checked,
)
from jobrunner.sources.tarball.verified import VerifiedTarball

__all__ = ["cache_dir", "fetch_tarball_url"]

logger = logging.getLogger(__name__)

_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_TRANSIENT_STATUSES: Final = frozenset({408, 425, 429})
_USER_AGENT: Final = "longshore-jobrunner"


def cache_dir(config: RunnerConfig) -> Path:
    """Where verified downloads are cached."""
    return config.tarball_cache_dir or config.work_dir / "tarball-cache"


def _parse_url(url: str | httpx.URL, what: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise NotAllowed(f"{what}: not a valid URL: {exc}") from exc


def _check_url(url: httpx.URL, config: RunnerConfig, what: str) -> str:
    """Scheme, credentials and host allowlist; returns the host (ASCII, as allowlisted)."""
    check_scheme(url.scheme, allow_http=config.allow_http, what=what)
    if url.userinfo:
        raise NotAllowed(f"{what}: credentials in the URL are not allowed")
    host = url.raw_host.decode("ascii")
    if not host:
        raise NotAllowed(f"{what}: the URL has no host")
    check_host_allowed(host, config.tarball_allowlist, what=what)
    return host


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


@dataclass
class _Download:
    url: httpx.URL
    sha256: str = ""
    size: int = 0


async def _get_once(
    client: httpx.AsyncClient,
    url: httpx.URL,
    host: str,
    addresses: list[IPAddress],
    tmp: Path,
    max_bytes: int,
) -> httpx.URL | _Download:
    """One GET of ``url``, connecting to the checked ``addresses`` in turn.

    Returns the next URL for a redirect, or the finished download.
    """
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    response: httpx.Response | None = None
    failures: list[str] = []
    for address in addresses:
        request = client.build_request(
            "GET",
            url.copy_with(host=str(address)),
            headers={"Host": url.netloc.decode("ascii")},
            extensions=extensions,
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.ConnectError as exc:
            failures.append(f"{address}: {exc}")
            continue
        break
    if response is None:
        raise FetchFailed(f"cannot connect to {host}: {'; '.join(failures)}")
    try:
        status = response.status_code
        if status in _REDIRECT_STATUSES:
            location = response.headers.get("location")
            if not location:
                raise SourceRejected(f"{url} answered {status} without a Location")
            try:
                return url.join(location)
            except httpx.InvalidURL as exc:
                raise NotAllowed(f"{url} redirects to an invalid URL: {exc}") from exc
        if status != 200:
            error = (
                FetchFailed if status >= 500 or status in _TRANSIENT_STATUSES else SourceRejected
            )
            raise error(f"{url} answered HTTP {status}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise SourceRejected(
                f"tarball is {int(declared)} bytes, larger than the cap of {max_bytes} bytes"
            )
        return await _stream_to_file(response, url, tmp, max_bytes)
    finally:
        await response.aclose()


async def _stream_to_file(
    response: httpx.Response, url: httpx.URL, tmp: Path, max_bytes: int
) -> _Download:
    digest = hashlib.sha256()
    size = 0
    # Writes go to the page cache and are small next to the network reads; they are not worth
    # a thread hop per chunk.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > max_bytes:
                raise SourceRejected(f"tarball is larger than the cap of {max_bytes} bytes")
            digest.update(chunk)
            out.write(chunk)
    return _Download(url=url, sha256=digest.hexdigest(), size=size)


async def _download(url: str, config: RunnerConfig, tmp: Path) -> _Download:
    context = await asyncio.to_thread(_ssl_context, config.ca_file)
    current = _parse_url(url, "tarball URL")
    async with httpx.AsyncClient(
        verify=context,
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(config.tarball_timeout),
        limits=httpx.Limits(max_keepalive_connections=0),
        headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
    ) as client:
        for hop in range(config.tarball_max_redirects + 1):
            what = "tarball URL" if hop == 0 else f"redirect to {current}"
            host = _check_url(current, config, what)
            port = current.port or (443 if current.scheme == "https" else 80)
            addresses = await resolve_checked(host, port, allow_private=config.allow_private_hosts)
            try:
                outcome = await _get_once(
                    client, current, host, addresses, tmp, config.tarball_max_bytes
                )
            except httpx.HTTPError as exc:
                raise FetchFailed(f"downloading {current} failed: {exc!r}") from exc
            if isinstance(outcome, _Download):
                return outcome
            logger.info("tarball redirect", extra={"from": str(current), "to": str(outcome)})
            current = outcome
    raise SourceRejected(f"{url} redirects more than {config.tarball_max_redirects} times")


async def fetch_tarball_url(
    url: str, sha256: str | None, config: RunnerConfig, dest_dir: Path
) -> VerifiedTarball:
    """Download ``url`` into ``dest_dir`` and verify it (see the module docstring).

    Returns a :class:`VerifiedTarball` whose file in ``dest_dir`` belongs to the caller.

    Raises:
        InvalidDefinition: ``sha256`` is not 64 hex digits.
        NotAllowed: scheme, credentials, host or address refused (on any hop).
        ChecksumMismatch: the bytes received do not hash to ``sha256``.
        SourceRejected: too large, too many redirects, or an HTTP 4xx answer.
        FetchFailed: network or server error, or the deadline passed.
    """
    pinned = normalise_sha256(sha256) if sha256 is not None else None
    _check_url(_parse_url(url, "tarball URL"), config, "tarball URL")
    await asyncio.to_thread(dest_dir.mkdir, parents=True, exist_ok=True)
    cache = DownloadCache(cache_dir(config))
    if pinned is not None:
        dest = dest_dir / f"{pinned}.tarball"
        size = await asyncio.to_thread(cache.copy_out, pinned, dest)
        if size is not None:
            logger.info("tarball from cache", extra={"url": url, "sha256": pinned})
            return VerifiedTarball(path=dest, sha256=pinned, size=size, origin=url, from_cache=True)
    tmp = dest_dir / f".download-{secrets.token_hex(8)}.part"
    try:
        try:
            async with asyncio.timeout(config.tarball_timeout):
                download = await _download(url, config, tmp)
        except TimeoutError as exc:
            raise FetchFailed(
                f"downloading {url} did not finish within {config.tarball_timeout:g} s"
            ) from exc
        if pinned is not None and download.sha256 != pinned:
            raise ChecksumMismatch(f"tarball {url}: SHA256 is {download.sha256}, expected {pinned}")
        dest = dest_dir / f"{download.sha256}.tarball"
        os.replace(tmp, dest)
    except BaseException:
        remove_quietly(tmp)
        raise
    try:
        await asyncio.to_thread(cache.store, dest, download.sha256)
    except OSError as exc:
        # The download is verified and usable; a cache that cannot be written (disk full,
        # permissions) only costs a later download, so it does not fail the run.
        logger.warning(
            "cannot cache the tarball", extra={"sha256": download.sha256, "error": str(exc)}
        )
    logger.info(
        "tarball downloaded",
        extra={"url": url, "final_url": str(download.url), "sha256": download.sha256},
    )
    return VerifiedTarball(
        path=dest,
        sha256=download.sha256,
        size=download.size,
        origin=url,
        final_url=str(download.url),
    )

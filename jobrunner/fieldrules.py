"""Rules for values that several definition fields share: URLs, relative paths, SHA256 pins.

Used by :mod:`jobrunner.definition` (``path``, ``dockerfile``) and by the source types'
``validate`` (``repo``, ``tarballUrl``, ``tarballPath``, ``tarballSha256``). Each rule raises
:class:`~jobrunner.errors.InvalidDefinition` naming the field it was given, and needs no
network: the sources check schemes, hosts and addresses again on every hop when they fetch.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Final
from urllib.parse import SplitResult, urlsplit

from jobrunner.config import RunnerConfig
from jobrunner.errors import InvalidDefinition
from jobrunner.sources.netcheck import is_public_address, parse_address

__all__ = [
    "ENCODED_SEPARATOR",
    "MAX_PATH",
    "MAX_URL",
    "check_relative_path",
    "check_sha256",
    "check_url",
]

MAX_URL: Final = 2048
MAX_PATH: Final = 1024
ENCODED_SEPARATOR: Final = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)
"""Percent-encodings that could smuggle '.', '/' or '\\' past a prefix check."""

_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")


def check_url(field: str, value: str, config: RunnerConfig) -> SplitResult:
    """An absolute https (or, if allowed, http) URL with a host, no credentials, no
    characters that could be read two ways, and no literal private address unless allowed."""
    if len(value) > MAX_URL:
        raise InvalidDefinition(field, f"must be at most {MAX_URL} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 or ch == "\\" for ch in value):
        raise InvalidDefinition(field, "must not contain spaces, control characters or '\\'")
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise InvalidDefinition(field, f"is not a valid URL: {exc}") from None
    schemes = ("https", "http") if config.allow_http else ("https",)
    if url.scheme.lower() not in schemes:
        hint = " (plain http is not allowed)" if url.scheme.lower() == "http" else ""
        raise InvalidDefinition(field, f"must be an https:// URL{hint}")
    if not url.hostname:
        raise InvalidDefinition(field, "must name a host")
    if url.username is not None or url.password is not None:
        raise InvalidDefinition(field, "must not embed credentials")
    segments = url.path.split("/")
    if "." in segments or ".." in segments or ENCODED_SEPARATOR.search(url.path):
        raise InvalidDefinition(field, "must not contain '.' or '..' segments or encoded '/'")
    address = parse_address(url.hostname)
    if address is not None and not config.allow_private_hosts and not is_public_address(address):
        raise InvalidDefinition(
            field, f"address {address} is not public (WORKER_JOB_ALLOW_PRIVATE_HOSTS is off)"
        )
    return url


def check_relative_path(field: str, value: object) -> str:
    """A relative path that stays below its root, in canonical form (``./a//b`` is ``a/b``)."""
    if not isinstance(value, str) or not value:
        raise InvalidDefinition(field, "must be a non-empty string")
    if len(value) > MAX_PATH:
        raise InvalidDefinition(field, f"must be at most {MAX_PATH} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value) or "\\" in value:
        raise InvalidDefinition(field, "must not contain control characters or '\\'")
    path = PurePosixPath(value)
    if path.is_absolute():
        raise InvalidDefinition(field, "must be a relative path")
    if ".." in path.parts:
        raise InvalidDefinition(field, "must not contain '..'")
    return str(path)


def check_sha256(field: str, value: str) -> str:
    """A SHA256 as 64 lower-case hexadecimal digits (upper case is accepted and lowered)."""
    lowered = value.lower()
    if not _SHA256.fullmatch(lowered):
        raise InvalidDefinition(field, "must be a SHA256: 64 hexadecimal digits")
    return lowered

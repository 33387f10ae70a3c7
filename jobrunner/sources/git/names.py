"""What a git source may name: a tag and a repository URL, checked before git runs.

Nothing is sent anywhere when a check fails:

- the tag matches :data:`TAG_PATTERN` (1-128 characters of letters, digits and ``._/+-``,
  starting with a letter or digit) and git's ref-name rules (no ``..``, ``@{``, ``//``, no
  component starting with ``.`` or ending with ``.lock``, no trailing ``/`` or ``.``):
  :class:`InvalidDefinition`. A tag can never start with ``-``, and it only ever reaches git
  inside ``refs/tags/<tag>``, so git cannot read it as an option;
- the repository URL is ``https://`` (``http://`` only with ``allow_http``; never ``file:``,
  ``ext::``, ``ssh``, ``<transport>::`` or a local path), has a host, no credentials, no query
  or fragment, no white space, control characters or ``\\``, no ``.``/``..`` segment and no
  percent-encoded ``.``, ``/`` or ``\\`` (which could walk out of an allowlisted prefix); and it
  matches ``repo_allowlist`` (``*``; the whole URL; or an entry ending in ``/`` as a prefix):
  :class:`NotAllowed`. Its addresses are checked when it is fetched
  (:mod:`jobrunner.sources.netcheck`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import SplitResult, urlsplit

from jobrunner.config import RunnerConfig
from jobrunner.errors import InvalidDefinition, NotAllowed
from jobrunner.fieldrules import ENCODED_SEPARATOR, MAX_URL
from jobrunner.sources.netcheck import check_scheme

__all__ = ["MAX_TAG_LENGTH", "TAG_PATTERN", "check_repo_url", "check_tag", "repo_allowed"]

MAX_TAG_LENGTH: Final = 128
TAG_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}")
"""What a tag may look like (the whole name must match; see :func:`check_tag`)."""


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
    if len(repo) > MAX_URL:
        raise NotAllowed(f"{what}: URL longer than {MAX_URL} characters")
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
    if "." in segments or ".." in segments or ENCODED_SEPARATOR.search(url.path):
        raise NotAllowed(f"{what}: the URL must not contain '.' or '..' segments or encoded '/'")
    if not repo_allowed(repo, config.repo_allowlist):
        raise NotAllowed(
            f"{what}: {repo} is not in the repository allowlist (WORKER_JOB_REPO_ALLOWLIST)"
        )
    return url

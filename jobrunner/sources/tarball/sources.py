"""The tarball source types: ``tarball_url`` (fields ``tarball_url``, ``tarball_sha256``) and
``tarball_path`` (``tarball_path``, optionally ``tarball_sha256``).

Both build from a :class:`~jobrunner.sources.tarball.verified.VerifiedTarball`; its SHA256 is
the run's ``sourceSha256`` and the identity the image cache key follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Final
from urllib.parse import urlsplit

from jobrunner.config import RunnerConfig
from jobrunner.errors import InvalidDefinition
from jobrunner.fieldrules import check_relative_path, check_sha256, check_url
from jobrunner.sources.base import Fetched, SourceField
from jobrunner.sources.netcheck import host_allowed
from jobrunner.sources.tarball.download import fetch_tarball_url
from jobrunner.sources.tarball.local import check_inside, resolve_tarball_path
from jobrunner.sources.tarball.verified import VerifiedTarball

__all__ = ["TarballPath", "TarballUrl"]


class TarballUrl:
    """A tarball downloaded over HTTPS from an allowlisted host, pinned to its SHA256."""

    name: Final = "tarball_url"
    fields: Final = (
        SourceField(name="tarball_url", api_name="tarballUrl"),
        SourceField(name="tarball_sha256", api_name="tarballSha256"),
    )

    def validate(self, fields: Mapping[str, str], config: RunnerConfig) -> dict[str, str]:
        """See :meth:`jobrunner.sources.base.Source.validate`."""
        value = fields["tarball_url"]
        url = check_url("tarballUrl", value, config)
        if url.fragment:
            raise InvalidDefinition("tarballUrl", "must not have a fragment")
        assert url.hostname is not None  # checked by check_url
        if not host_allowed(url.hostname, config.tarball_allowlist):
            raise InvalidDefinition(
                "tarballUrl",
                f"host {url.hostname!r} is not in the tarball allowlist "
                "(WORKER_JOB_TARBALL_ALLOWLIST)",
            )
        return {"tarball_url": value, **_pin(fields)}

    def check_saved(self, fields: Mapping[str, str], config: RunnerConfig) -> None:
        """Nothing on this host to check: the URL is checked when fetched."""

    async def fetch(
        self, fields: Mapping[str, str], config: RunnerConfig, dest_dir: Path
    ) -> Fetched:
        """See :func:`jobrunner.sources.tarball.download.fetch_tarball_url`."""
        tarball = await fetch_tarball_url(
            fields["tarball_url"], fields.get("tarball_sha256"), config, dest_dir
        )
        return _fetched(tarball)

    def download_name(self, fields: Mapping[str, str], source_sha256: str) -> str | None:
        """The last segment of the URL's path, while the pin (if any) is ``source_sha256``."""
        base = PurePosixPath(urlsplit(fields.get("tarball_url", "")).path).name
        return _still_named(fields, source_sha256, base)

    def describe(self, fields: Mapping[str, str]) -> str:
        """``<url> sha256:<first 12 digits>``."""
        return _describe(fields.get("tarball_url", ""), fields)


class TarballPath:
    """A tarball under ``WORKER_JOB_TARBALL_DIR`` on the worker's host; a SHA256 pin is
    optional (the file is hashed on every run)."""

    name: Final = "tarball_path"
    fields: Final = (
        SourceField(name="tarball_path", api_name="tarballPath"),
        SourceField(name="tarball_sha256", api_name="tarballSha256", required=False),
    )

    def validate(self, fields: Mapping[str, str], config: RunnerConfig) -> dict[str, str]:
        """See :meth:`jobrunner.sources.base.Source.validate`."""
        if config.tarball_dir is None:
            raise InvalidDefinition(
                "tarballPath", "tarball paths are disabled: WORKER_JOB_TARBALL_DIR is not set"
            )
        path = check_relative_path("tarballPath", fields["tarball_path"])
        return {"tarball_path": path, **_pin(fields)}

    def check_saved(self, fields: Mapping[str, str], config: RunnerConfig) -> None:
        """See :func:`jobrunner.sources.tarball.local.check_inside`."""
        if config.tarball_dir is not None:
            check_inside(config.tarball_dir, fields["tarball_path"])

    async def fetch(
        self, fields: Mapping[str, str], config: RunnerConfig, dest_dir: Path
    ) -> Fetched:
        """See :func:`jobrunner.sources.tarball.local.resolve_tarball_path`; the bytes are
        copied to ``dest_dir`` while they are hashed."""
        tarball = await asyncio.to_thread(
            resolve_tarball_path,
            fields["tarball_path"],
            fields.get("tarball_sha256"),
            config,
            dest_dir,
        )
        return _fetched(tarball)

    def download_name(self, fields: Mapping[str, str], source_sha256: str) -> str | None:
        """The file's own name, while the pin (if any) is ``source_sha256``."""
        base = PurePosixPath(fields.get("tarball_path", "")).name
        return _still_named(fields, source_sha256, base)

    def describe(self, fields: Mapping[str, str]) -> str:
        """``<path> sha256:<first 12 digits>`` (just the path when unpinned)."""
        return _describe(fields.get("tarball_path", ""), fields)


def _pin(fields: Mapping[str, str]) -> dict[str, str]:
    sha256 = fields.get("tarball_sha256")
    return {} if sha256 is None else {"tarball_sha256": check_sha256("tarballSha256", sha256)}


def _fetched(tarball: VerifiedTarball) -> Fetched:
    return Fetched(path=tarball.path, identity=f"sha256:{tarball.sha256}")


def _still_named(fields: Mapping[str, str], source_sha256: str, base: str) -> str | None:
    # A definition pinned to other bytes since no longer names the file that was fetched.
    if fields.get("tarball_sha256") not in (None, source_sha256):
        return None
    return base or None


def _describe(where: str, fields: Mapping[str, str]) -> str:
    sha256 = fields.get("tarball_sha256") or ""
    return f"{where} sha256:{sha256[:12]}" if sha256 else where

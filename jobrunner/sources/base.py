"""The contract of a source type: where a job's build context comes from.

A job definition names its source type (``source``, e.g. ``git_tag``) and carries that
type's fields as one mapping (``source_fields``, e.g. ``{"repo": ..., "tag": ...}``). Each
source type is one object implementing :class:`Source`, registered by its name in
:mod:`jobrunner.sources.registry`. Everything that depends on the kind of source is asked of
it: the fields it reads and how the admin API spells them, their rules, how its bytes are
fetched and verified, what a download of the stored source is called. Nothing outside
:mod:`jobrunner.sources` switches on the source type.

A fetch ends in a :class:`Fetched`: an archive in the run's directory whose content is known
(a commit, a SHA256) before anything is built from it. Its entries are still untrusted; the
build context is made from it by :mod:`jobrunner.archive`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from jobrunner.config import RunnerConfig
from store.jobs.models import RunFields

__all__ = ["Fetched", "Source", "SourceField"]


@dataclass(frozen=True, kw_only=True)
class SourceField:
    """One field a source type reads from a job definition."""

    name: str
    """The key in ``JobDefinition.source_fields``: the snake_case API name (``tarball_url``)."""
    api_name: str
    """How the admin API spells it (``tarballUrl``); errors about the field name it so."""
    required: bool = True
    """Whether a definition of this source type must set it."""


@dataclass(frozen=True, kw_only=True)
class Fetched:
    """A fetched and verified source, ready to be turned into a build context."""

    path: Path
    """The source archive (gzip or plain tar) in the fetch's ``dest_dir``; the caller owns it
    and stores it as the run's source artifact."""
    identity: str
    """What the content is, whatever it came from (``git:<commit>``, ``sha256:<hex>``): the
    image cache key is derived from it, so equal identities must mean equal bytes."""
    fields: RunFields = field(default_factory=lambda: RunFields())
    """Fields to record on the run once the fetch is done (``commit_sha`` for git)."""


class Source(Protocol):
    """A source type. Implementations hold no state: every call gets the runner's settings.

    **Fields.** :attr:`fields` declares what a definition of this type carries. Before
    :meth:`validate` is called, :func:`jobrunner.sources.registry.validate` has already
    applied the rules common to every source: a field that is blank (seed clients send
    ``""`` for what they do not use) counts as unset, a set field is a string, every
    required field is set, and no field of another source type (or an unknown one) is set.
    So every method below receives exactly the declared fields that are set.

    **Errors.** Rules broken by a definition raise
    :class:`~jobrunner.errors.InvalidDefinition` naming the field by its ``api_name``. A
    fetch raises a :class:`~jobrunner.errors.VerificationError` when the source cannot be
    trusted (permanent: the run is not retried) and a
    :class:`~jobrunner.errors.InfrastructureError` (``FetchFailed``) when trying again
    later may help.
    """

    @property
    def name(self) -> str:
        """The source type's name: ``source`` in definitions, the API and the database."""
        ...

    @property
    def fields(self) -> tuple[SourceField, ...]:
        """The fields a definition of this type carries, in the order errors are reported."""
        ...

    def validate(self, fields: Mapping[str, str], config: RunnerConfig) -> dict[str, str]:
        """Check the fields of a definition being saved (and again before each run, in case
        the settings became stricter); return them normalised (e.g. a SHA256 lower-cased).

        Needs no network and no file system, so it gives the same answer everywhere; the
        checks that need them are made by :meth:`fetch` (every time) and, when a definition
        is saved, by :meth:`check_saved`. Raises ``InvalidDefinition``.
        """
        ...

    def check_saved(self, fields: Mapping[str, str], config: RunnerConfig) -> None:
        """Checks of a definition being saved that need this host's file system, such as a
        tarball path that leads out of its directory through a symbolic link that exists
        now. Blocking: async callers use ``asyncio.to_thread``. Raises ``InvalidDefinition``.

        Only a courtesy to whoever saves the definition: :meth:`fetch` checks again.
        """
        ...

    async def fetch(
        self, fields: Mapping[str, str], config: RunnerConfig, dest_dir: Path
    ) -> Fetched:
        """Fetch the source into ``dest_dir`` (created if needed) and verify it, under the
        source's own deadline from ``config``.

        Every check of the URL, host, addresses, path and pinned digest is made here again,
        whatever was checked when the definition was saved. Cancellation stops the fetch at
        once and leaves no process running; files left in ``dest_dir`` are the caller's to
        remove (it removes the whole directory).

        Raises ``InvalidDefinition``, ``VerificationError`` (``NotAllowed``,
        ``ChecksumMismatch``, ``SourceRejected``, ``UnsafeArchive``) or ``FetchFailed``.
        """
        ...

    def download_name(self, fields: Mapping[str, str], source_sha256: str) -> str | None:
        """The file name a run's stored source is downloaded under while the definition
        still names that very file (a tarball's own name, when its pin, if any, is
        ``source_sha256``); ``None`` for the generic ``<job>-<digest>.tar[.gz]``."""
        ...

    def describe(self, fields: Mapping[str, str]) -> str:
        """One line telling what a job builds, for listings (``<repo>@<tag>``)."""
        ...

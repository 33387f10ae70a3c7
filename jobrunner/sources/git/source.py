"""The ``git_tag`` source type: a tag of an HTTPS git repository (fields ``repo``, ``tag``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from jobrunner.config import RunnerConfig
from jobrunner.errors import InvalidDefinition
from jobrunner.fieldrules import check_url
from jobrunner.sources.base import Fetched, SourceField
from jobrunner.sources.git.fetch import fetch_git_tag
from jobrunner.sources.git.names import check_tag, repo_allowed

__all__ = ["GitTag"]


class GitTag:
    """The ``git archive`` of the commit a tag names; the run records that commit
    (``commitSha``) and the image cache key follows it, so a moved tag is rebuilt."""

    name: Final = "git_tag"
    fields: Final = (
        SourceField(name="repo", api_name="repo"),
        SourceField(name="tag", api_name="tag"),
    )

    def validate(self, fields: Mapping[str, str], config: RunnerConfig) -> dict[str, str]:
        """See :meth:`jobrunner.sources.base.Source.validate`."""
        repo = fields["repo"]
        url = check_url("repo", repo, config)
        if url.query or url.fragment:
            raise InvalidDefinition("repo", "must not have a query or fragment")
        if not repo_allowed(repo, config.repo_allowlist):
            raise InvalidDefinition(
                "repo", "is not in the repository allowlist (WORKER_JOB_REPO_ALLOWLIST)"
            )
        return {"repo": repo, "tag": check_tag(fields["tag"])}

    def check_saved(self, fields: Mapping[str, str], config: RunnerConfig) -> None:
        """Nothing on this host to check: the repository is checked when fetched."""

    async def fetch(
        self, fields: Mapping[str, str], config: RunnerConfig, dest_dir: Path
    ) -> Fetched:
        """See :func:`jobrunner.sources.git.fetch.fetch_git_tag`."""
        git = await fetch_git_tag(fields["repo"], fields["tag"], config, dest_dir)
        return Fetched(
            path=git.archive_path,
            identity=f"git:{git.commit_sha}",
            fields={"commit_sha": git.commit_sha},
        )

    def download_name(self, fields: Mapping[str, str], source_sha256: str) -> str | None:
        """None: a git source is offered as ``<job>-<commit>.tar``."""
        return None

    def describe(self, fields: Mapping[str, str]) -> str:
        """``<repo>@<tag>``."""
        return f"{fields.get('repo')}@{fields.get('tag')}"

"""The ``WORKER_JOB_*`` settings of container jobs: where sources may come from, the caps on
what they hold, what a build may use, and the ceilings of every definition.

:class:`JobSettings` is the part of :class:`~service.settings.Settings` that the job runner
and the Docker engine are built from (``service.runtime``); each field ``job_foo`` is
``WORKER_JOB_FOO``, documented in docs/configuration.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

from service.units import parse_duration, parse_size


class JobSettings(BaseSettings):
    """Settings of container jobs (seed 003 names, plus Longshore's own)."""

    # Sources
    job_repo_allowlist: Annotated[tuple[str, ...], NoDecode] = ()
    job_tarball_allowlist: Annotated[tuple[str, ...], NoDecode] = ()
    job_tarball_dir: Path | None = None
    job_tarball_max_bytes: Annotated[int, NoDecode] = Field(default=64 * 1024**2, ge=1)
    job_tarball_timeout: Annotated[float, NoDecode] = Field(default=30.0, gt=0.0)
    job_git_timeout: Annotated[float, NoDecode] = Field(default=120.0, gt=0.0)
    job_ca_file: Path | None = None
    job_allow_private_hosts: bool = False

    # Archives (sources, build contexts) and artifacts
    job_archive_max_entries: int = Field(default=10_000, ge=1)
    job_archive_max_file_bytes: Annotated[int, NoDecode] = Field(default=256 * 1024**2, ge=1)
    job_archive_max_bytes: Annotated[int, NoDecode] = Field(default=256 * 1024**2, ge=1)
    job_artifacts_max_bytes: Annotated[int, NoDecode] = Field(
        default=256 * 1024**2, ge=1024**2, le=64 * 1024**3
    )

    # Builds
    job_base_images: Annotated[tuple[str, ...], NoDecode] = ("*",)
    job_pull: Literal["never", "missing"] = "never"
    job_pull_timeout: Annotated[float, NoDecode] = Field(default=300.0, gt=0.0)
    job_build_cgroup_root: Path | None = Path("/sys/fs/cgroup")

    # Runs
    job_network: Annotated[tuple[str, ...], NoDecode] = ()
    job_workdir: Path | None = None
    job_output_bytes: Annotated[int, NoDecode] = Field(default=1024**2, ge=1024)

    # Ceilings of every definition
    job_max_memory_mb: int = Field(default=8192, ge=16)
    job_max_cpus: float = Field(default=4.0, ge=0.01, le=1024.0)
    job_max_pids: int = Field(default=4096, ge=1, le=65536)
    job_max_timeout_seconds: Annotated[int, NoDecode] = Field(default=86_400, ge=1, le=7 * 86_400)

    @field_validator("job_tarball_timeout", "job_git_timeout", "job_pull_timeout", mode="before")
    @classmethod
    def _job_durations(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("job_max_timeout_seconds", mode="before")
    @classmethod
    def _whole_seconds(cls, value: Any) -> Any:
        if isinstance(value, str):
            seconds = parse_duration(value)
            if seconds != int(seconds):
                raise ValueError("must be a whole number of seconds")
            return int(seconds)
        return value

    @field_validator(
        "job_tarball_max_bytes",
        "job_output_bytes",
        "job_archive_max_file_bytes",
        "job_archive_max_bytes",
        "job_artifacts_max_bytes",
        mode="before",
    )
    @classmethod
    def _sizes(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator(
        "job_repo_allowlist",
        "job_tarball_allowlist",
        "job_network",
        "job_base_images",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("job_network")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "host" in value:
            raise ValueError("the host network cannot be allowed for job containers")
        return value

    @field_validator("job_base_images")
    @classmethod
    def _image_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if any(char.isspace() or ord(char) < 32 for char in pattern) or "$" in pattern:
                raise ValueError(f"{pattern!r} is not an image pattern")
        return value

    @field_validator("job_build_cgroup_root", mode="before")
    @classmethod
    def _optional_path(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

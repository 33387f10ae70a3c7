"""The settings of the disk's upkeep and of infrastructure faults: run retention and crash
leftovers, image retention, and how long a run waits for its infrastructure. Part of
:class:`~service.settings.Settings` (field ``foo`` is ``WORKER_FOO``; the durations are
parsed there with every other), documented in docs/configuration.md and docs/operations.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from service.job_settings import JobSettings
from service.units import parse_job_counts, parse_retention_rules, parse_size


class UpkeepSettings(JobSettings):
    """Run and image retention, crash leftovers, infrastructure waits."""

    # Run retention and crash leftovers (docs/operations.md, "Disk")
    run_retention_keep_last: int = Field(default=100, ge=1)
    run_retention_keep_for: Annotated[float, NoDecode] = Field(default=86400.0, ge=0.0)
    run_retention_interval: Annotated[float, NoDecode] = Field(default=600.0, ge=0.0)
    run_retention_jobs: Annotated[dict[str, tuple[int, float]], NoDecode] = Field(
        default_factory=dict
    )

    # Infrastructure faults (docs/operations.md, "Infrastructure faults")
    infra_retry_seconds: Annotated[float, NoDecode] = Field(default=600.0, ge=0.0)

    # Image retention (docs/operations.md, "Disk")
    image_retention_keep: int = Field(default=3, ge=1)
    image_retention_jobs: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    image_retention_interval: Annotated[float, NoDecode] = Field(default=3600.0, ge=0.0)
    image_build_cache_max_bytes: Annotated[int | None, NoDecode] = Field(default=10 * 1024**3, ge=0)

    @field_validator("run_retention_jobs", mode="before")
    @classmethod
    def _retention_jobs(cls, value: Any) -> Any:
        return parse_retention_rules(value) if isinstance(value, str) else value

    @field_validator("image_retention_jobs", mode="before")
    @classmethod
    def _image_jobs(cls, value: Any) -> Any:
        return parse_job_counts(value) if isinstance(value, str) else value

    @field_validator("image_build_cache_max_bytes", mode="before")
    @classmethod
    def _cache_size(cls, value: Any) -> Any:
        if isinstance(value, str):
            return None if value.strip().lower() in ("", "off") else parse_size(value)
        return value

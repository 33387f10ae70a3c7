"""How a file event store is set up: retention per stream, its options, and what a
retention pass reports (see docs/events.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from store.events.errors import InvalidEvent
from store.events.models import Durability, Stream


@dataclass(frozen=True, kw_only=True, slots=True)
class RetentionPolicy:
    """What a retention pass removes from one stream (``None`` = no such limit).

    - ``max_per_key``: keep the newest N events of each key (``WORKER_JOB_EVENT_MAX_ENTRIES``).
    - ``max_total``: keep the newest N events of the stream (``WORKER_ADMIN_AUDIT_EVENT_LIMIT``).
    - ``max_age``: remove events older than this (``WORKER_ADMIN_AUDIT_RETENTION``).
    """

    max_per_key: int | None = None
    max_total: int | None = None
    max_age: timedelta | None = None

    def __post_init__(self) -> None:
        for name in ("max_per_key", "max_total"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidEvent(f"{name} must be at least 1, got {value}")
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise InvalidEvent("max_age must be positive")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_per_key, self.max_total, self.max_age))


def _default_retention() -> Mapping[Stream, RetentionPolicy]:
    return {
        Stream.RUNS: RetentionPolicy(max_per_key=10_000),
        Stream.SCHEDULES: RetentionPolicy(max_per_key=10_000),
        Stream.AUDIT: RetentionPolicy(),
    }


@dataclass(frozen=True, kw_only=True, slots=True)
class EventStoreOptions:
    """How a :class:`~store.events.file.FileEventStore` behaves (see docs/events.md)."""

    directory: Path
    durability: Durability = Durability.ALWAYS
    fsync_interval: float = 1.0
    segment_bytes: int = 64 * 1024 * 1024
    retention: Mapping[Stream, RetentionPolicy] = field(default_factory=_default_retention)
    retention_interval: float = 60.0
    archive_dir: Path | None = None
    export_limit_max: int = 1_000_000
    subscriber_buffer: int = 1024
    poll_interval: float = 0.5
    max_batch: int = 8192

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))
        try:
            object.__setattr__(self, "durability", Durability(self.durability))
        except ValueError:
            modes = ", ".join(mode.value for mode in Durability)
            raise InvalidEvent(
                f"durability must be one of {modes}, got {self.durability!r}"
            ) from None
        if self.archive_dir is not None:
            object.__setattr__(self, "archive_dir", Path(self.archive_dir))
        if self.segment_bytes < 4096:
            raise InvalidEvent("segment_bytes must be at least 4096")
        for name in ("fsync_interval", "retention_interval", "poll_interval"):
            if getattr(self, name) <= 0:
                raise InvalidEvent(f"{name} must be positive")
        for name in ("export_limit_max", "subscriber_buffer", "max_batch"):
            if getattr(self, name) < 1:
                raise InvalidEvent(f"{name} must be at least 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class RetentionReport:
    """What one retention pass removed, per stream, and how many rows it archived."""

    removed: Mapping[Stream, int]
    archived: int
    archive_file: Path | None = None

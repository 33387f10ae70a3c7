"""Value objects of container jobs: job definitions, runs and their artifacts.

Everything here is frozen and keyword-only; timestamps are timezone-aware (UTC). Field
names are snake_case versions of the API's camelCase ones (``timeoutSeconds`` is
``timeout_seconds``). The rules a definition must follow to be saved or run (allowlists,
schemes, path escapes, ...) depend on the runner's settings and live in
``jobrunner.definition``; the store checks only what it needs to keep its records sane.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, TypedDict

from store.queue.models import DEFAULT_QUEUE, Page

__all__ = [
    "BUILD_LOG_MAX_CHARS",
    "DELETE_RUNS_MAX",
    "ERROR_MAX_CHARS",
    "JOB_NAME",
    "DeletedRuns",
    "JobDefinition",
    "NewRun",
    "OutputLimitAction",
    "Page",
    "ParamSpec",
    "ParamType",
    "ParamValue",
    "Resources",
    "Run",
    "RunArtifact",
    "RunFields",
    "RunStatus",
    "RunTrigger",
    "SecretGrant",
    "bound_text",
]

JOB_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
"""What a job name looks like (SPEC §4)."""

BUILD_LOG_MAX_CHARS: Final = 64 * 1024
"""A run keeps at most this much of its build log: the tail, where build errors are."""

ERROR_MAX_CHARS: Final = 8 * 1024
"""A run's error message is cut to this length."""

DELETE_RUNS_MAX: Final = 1000
"""The most runs one ``RunStore.delete_runs`` call deletes: one short transaction."""


class OutputLimitAction(enum.StrEnum):
    """What happens when a run prints more than its output cap: keep the head and tail
    (``truncate``) or fail the run (``fail``)."""

    TRUNCATE = "truncate"
    FAIL = "fail"


@dataclass(frozen=True, kw_only=True)
class Resources:
    """Limits of a job's container (API: ``memoryMb``, ``cpus``, ``pidsLimit``)."""

    memory_mb: int = 512
    cpus: float = 1.0
    pids_limit: int = 256


ParamValue = str | int | bool
"""The value of a job parameter: a string (``string``, ``enum``), an integer or a boolean."""


class ParamType(enum.StrEnum):
    """The type of a job parameter."""

    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    ENUM = "enum"


@dataclass(frozen=True, kw_only=True)
class ParamSpec:
    """A parameter a job declares (API: ``params[]``): its ``name`` and ``type``, whether
    a run must have a value (``required``), the value used when none is given
    (``default``), a regular expression a ``string`` must match in full (``pattern``), the
    values an ``enum`` may take (``choices``) and whether a manual run may override it
    (``overridable``). The rules are the job runner's (``jobrunner.params``)."""

    name: str
    type: ParamType = ParamType.STRING
    required: bool = False
    default: ParamValue | None = None
    pattern: str | None = None
    choices: tuple[str, ...] = ()
    overridable: bool = False
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class SecretGrant:
    """A secret a job is given (API: ``secrets[]``): the secret called ``name`` as the
    environment variable ``env`` or as the file ``/run/secrets/<file>`` (exactly one of
    the two is set)."""

    name: str
    env: str | None = None
    file: str | None = None


@dataclass(frozen=True, kw_only=True)
class JobDefinition:
    """A container job as defined by an operator.

    ``source`` names the job's source type and ``source_fields`` holds that type's fields
    by name, as strings (``{"repo": ..., "tag": ...}`` for ``git_tag``). The source types,
    their fields and rules belong to the job runner (``jobrunner.sources``); the store keeps
    the fields as one JSON object and only checks that they are strings. ``path`` is the
    build context's subdirectory (``None``: the archive root, or its single top-level
    directory). ``output_bytes`` ``None`` means the server's cap. ``user`` is who the
    container runs as (``uid[:gid]`` or names the image knows); ``None`` means the job
    runner's unprivileged default. ``secrets`` are the secrets the job is granted and
    ``params`` the parameters it declares.

    ``revision``, ``created_at`` and ``updated_at`` are set by the store: a definition that
    was never saved has revision 0 and no timestamps; each save increments the revision.
    """

    name: str
    source: str
    source_fields: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    path: str | None = None
    dockerfile: str = "Dockerfile"
    command: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    queue: str = DEFAULT_QUEUE
    retries: int = 0
    timeout_seconds: int = 600
    resources: Resources = field(default_factory=Resources)
    network: str = "none"
    artifacts_path: str = "/artifacts"
    output_bytes: int | None = None
    on_output_limit: OutputLimitAction = OutputLimitAction.TRUNCATE
    user: str | None = None
    secrets: tuple[SecretGrant, ...] = ()
    params: tuple[ParamSpec, ...] = ()
    revision: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


class RunStatus(enum.StrEnum):
    """Where a run is: ``queued`` → ``fetching`` → ``building`` → ``running`` → one of the
    final statuses. Stages may be skipped forwards (a cached image is not rebuilt) but
    never revisited, and a final status never changes."""

    QUEUED = "queued"
    FETCHING = "fetching"
    BUILDING = "building"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Whether the run has ended (nothing about it changes any more)."""
        return self in _FINAL

    @property
    def stage(self) -> int:
        """The position in the lifecycle: 0 queued ... 3 running, 4 for every final status."""
        return _STAGES.get(self, len(_STAGES))

    def may_become(self, target: RunStatus) -> bool:
        """Whether a run in this status may move to ``target``."""
        return not self.is_final and (target.is_final or target.stage > self.stage)

    @classmethod
    def sources_of(cls, target: RunStatus) -> tuple[RunStatus, ...]:
        """Every status from which a run may move to ``target``."""
        return tuple(status for status in cls if status.may_become(target))


_FINAL = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELLED}
)
_STAGES = {
    RunStatus.QUEUED: 0,
    RunStatus.FETCHING: 1,
    RunStatus.BUILDING: 2,
    RunStatus.RUNNING: 3,
}


class RunTrigger(enum.StrEnum):
    """What started a run: an API call, a schedule firing, or a dead-letter replay."""

    API = "api"
    SCHEDULE = "schedule"
    REPLAY = "replay"


@dataclass(frozen=True, kw_only=True)
class RunArtifact:
    """A file a run left in its artifacts directory (API: ``name``, ``sizeBytes``,
    ``sha256``); its bytes are in the artifact store under ``sha256``."""

    name: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class NewRun:
    """A run to record (status ``queued``). ``run_id`` ``None`` lets the store pick one
    (32 hex digits); callers that must hand out the id before the run is recorded (e.g. in
    the payload of the task that will execute it) pass their own."""

    job: str
    task_id: int | None = None
    attempt: int = 1
    trigger: RunTrigger = RunTrigger.API
    actor: str | None = None
    schedule_name: str | None = None
    run_id: str | None = None
    params: Mapping[str, ParamValue] | None = None


@dataclass(frozen=True, kw_only=True)
class Run:
    """One attempt at running a job, as persisted (SPEC §4's run record).

    ``queued_at`` is when the run was recorded; ``fetching_at``, ``building_at`` and
    ``running_at`` when it entered those stages (``None`` for a stage it skipped or has not
    reached), ``finished_at`` when it reached a final status. ``commit_sha`` (git) or
    ``source_sha256`` (tarballs) identify the source built. ``output_bytes`` is the total
    the container printed, ``output_truncated`` whether only its head and tail were kept.
    ``build_log`` keeps at most :data:`BUILD_LOG_MAX_CHARS` (the tail).
    ``cancel_requested_at`` is set when someone asked for the run to be cancelled; the
    worker executing it stops it and records ``cancelled``.
    """

    run_id: str
    task_id: int | None
    job: str
    attempt: int
    trigger: RunTrigger
    actor: str | None
    schedule_name: str | None
    status: RunStatus
    queued_at: datetime
    fetching_at: datetime | None = None
    building_at: datetime | None = None
    running_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    commit_sha: str | None = None
    source_sha256: str | None = None
    image_id: str | None = None
    output_bytes: int = 0
    output_truncated: bool = False
    artifacts: tuple[RunArtifact, ...] = ()
    build_log: str = ""
    updated_at: datetime | None = None
    output_sha256: str | None = None
    """SHA256 of the retained output (head + tail), whose bytes are in the artifact store."""
    user: str | None = None
    """The user the container ran as (set when the run reaches ``running``)."""
    params: Mapping[str, ParamValue] | None = None
    """The parameter values of the run (``None``: not resolved yet)."""

    def artifact(self, name: str) -> RunArtifact | None:
        """The artifact called ``name``, if the run has one."""
        return next((a for a in self.artifacts if a.name == name), None)


@dataclass(frozen=True, kw_only=True)
class DeletedRuns:
    """What ``RunStore.delete_runs`` deleted: the runs' ids and the SHA256 of every blob
    (output, source artifact, artifacts) those runs referenced."""

    run_ids: tuple[str, ...] = ()
    blobs: frozenset[str] = frozenset()


class RunFields(TypedDict, total=False):
    """Fields of a run that :meth:`~store.jobs.protocol.RunStore.transition` may set; a field
    left out keeps its value."""

    exit_code: int
    error: str
    commit_sha: str
    source_sha256: str
    image_id: str
    output_bytes: int
    output_truncated: bool
    build_log: str
    artifacts: tuple[RunArtifact, ...] | list[RunArtifact]
    output_sha256: str
    user: str
    params: Mapping[str, ParamValue]


def bound_text(text: str, limit: int, *, keep: str = "tail") -> str:
    """``text`` cut to at most ``limit`` characters with a marker saying how much was
    dropped; ``keep`` the ``tail`` (build logs: the error is at the end) or the ``head``."""
    if len(text) <= limit:
        return text
    omitted = len(text) - limit
    # Twice: the marker's own length depends on the number it shows.
    for _ in range(2):
        marker = f"[... {omitted} characters omitted ...]"
        room = max(limit - len(marker) - 1, 0)
        omitted = len(text) - room
    if keep == "head":
        return f"{text[:room]}\n{marker}"
    return f"{marker}\n{text[len(text) - room :]}"


@dataclass(frozen=True, kw_only=True)
class ScheduleHealth:
    """How the runs a schedule started are going: when its newest successful run finished
    (``None``: none did) and how many of its runs failed after that one."""

    last_success_at: datetime | None
    failures_since_success: int

    @property
    def failing(self) -> bool:
        """Whether its runs keep failing: :data:`FAILING_AFTER` or more failed since its
        last success (or since its first run, when none succeeded)."""
        return self.failures_since_success >= FAILING_AFTER


FAILING_AFTER = 2
"""Failed runs in a row after which a schedule is ``failing``."""

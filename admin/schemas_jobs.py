"""Request and response bodies of the ``jobs`` routes (seed 003 shapes, camelCase), and
their conversion from the store's value objects.

The request model only checks JSON types; the rules of a definition (names, allowlists,
schemes, sha format, path escapes) are :func:`jobrunner.definition.validate_definition`'s,
applied by the route, so every API client and the runner share one set of rules.

A job's source fields are flat in the API (``repo``, ``tarballUrl``, ...), one body field
for each field a source type declares; they are mapped to and from a definition's
``source_fields`` by the names the source types declare (:mod:`jobrunner.sources.registry`).
A new source type adds its fields to :class:`JobRequest` and :class:`JobBody`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field

from admin.schemas import Schema, epoch_ms, rfc3339
from admin.schemas_params import ParamBody, SecretGrantBody
from jobrunner.sources import registry
from store.jobs.models import (
    JobDefinition,
    OutputLimitAction,
    Resources,
    Run,
)

StrictInt = Annotated[int, Field(strict=True)]
StrictFloat = Annotated[float, Field(strict=True)]

# --- requests ---------------------------------------------------------------------------


class ResourcesBody(Schema):
    """Container limits; an omitted field keeps its default (512 MiB, 1 CPU, 256 pids)."""

    memory_mb: StrictInt = Resources.memory_mb
    cpus: StrictFloat = Resources.cpus
    pids_limit: StrictInt = Resources.pids_limit

    @classmethod
    def of(cls, resources: Resources) -> ResourcesBody:
        return cls(
            memory_mb=resources.memory_mb, cpus=resources.cpus, pids_limit=resources.pids_limit
        )


class JobRequest(Schema):
    """``POST /jobs``: a whole definition (saving replaces every field). Seed clients send
    ``""`` for the source fields they do not use; that reads as unset."""

    name: str
    description: str | None = None
    source: str
    repo: str | None = None
    tag: str | None = None
    tarball_url: str | None = None
    tarball_path: str | None = None
    tarball_sha256: str | None = None
    path: str | None = None
    dockerfile: str | None = None
    command: list[str] | None = None
    env: list[str] | None = None
    queue: str | None = None
    """Default: ``WORKER_ADMIN_DEFAULT_QUEUE`` (``default``)."""
    retries: StrictInt = 0
    timeout_seconds: StrictInt = JobDefinition.timeout_seconds
    """``0`` (what seed 003's form sends when left empty) means the default, 600."""
    resources: ResourcesBody | None = None
    network: str | None = None
    artifacts_path: str | None = None
    output_bytes: StrictInt | None = None
    on_output_limit: str | None = None
    user: str | None = None
    """Who the container runs as (``uid[:gid]`` or names); default: an unprivileged user."""
    secrets: list[SecretGrantBody] | None = None
    """The secrets the job gets; omitted: those of the saved definition (a seed 003 client,
    which knows no secrets, keeps them when it saves the job)."""
    params: list[ParamBody] | None = None
    """The parameters the job declares; omitted: those of the saved definition."""

    def definition(
        self, *, default_queue: str, existing: JobDefinition | None = None
    ) -> JobDefinition:
        """The definition as sent, not yet validated (the store's types, loosely filled:
        :func:`~jobrunner.definition.validate_definition` reports what is wrong); omitted
        ``secrets`` and ``params`` are those of ``existing``."""
        resources = self.resources or ResourcesBody()
        fields: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "source_fields": registry.from_api(self.model_dump(by_alias=True)),
            "description": self.description or "",
            "path": self.path,
            "dockerfile": self.dockerfile or "Dockerfile",
            "command": tuple(self.command or ()),
            "env": tuple(self.env or ()),
            "queue": self.queue or default_queue,
            "retries": self.retries,
            "timeout_seconds": self.timeout_seconds or JobDefinition.timeout_seconds,
            "resources": Resources(
                memory_mb=resources.memory_mb,
                cpus=resources.cpus,
                pids_limit=resources.pids_limit,
            ),
            "network": self.network or "none",
            "artifacts_path": self.artifacts_path or "/artifacts",
            "output_bytes": self.output_bytes,
            "on_output_limit": self.on_output_limit or OutputLimitAction.TRUNCATE.value,
            "user": self.user or None,
            "secrets": (
                tuple(grant.grant() for grant in self.secrets)
                if self.secrets is not None
                else (existing.secrets if existing is not None else ())
            ),
            "params": (
                tuple(param.spec() for param in self.params)
                if self.params is not None
                else (existing.params if existing is not None else ())
            ),
        }
        # ``on_output_limit`` stays a plain string here on purpose, as do the source fields:
        # the validator turns them into their types or names the field in a 400.
        return JobDefinition(**fields)


# --- responses --------------------------------------------------------------------------


ENV_MASK = "***"


def masked_env(env: Iterable[str]) -> list[str]:
    """``KEY=***`` for each ``KEY=VALUE`` entry: the names a viewer may see, not the values
    (which may be credentials)."""
    return [f"{entry.partition('=')[0]}={ENV_MASK}" for entry in env]


class JobBody(Schema):
    """A saved definition: every field, plus the store's revision and timestamps. Seed 003's
    fields are never null: an unused source field or an unset ``path`` is ``""``. ``env``
    holds values for operators and admins only; a viewer sees ``KEY=***``."""

    name: str
    description: str
    source: str
    repo: str
    tag: str
    tarball_url: str
    tarball_path: str
    tarball_sha256: str
    path: str
    dockerfile: str
    command: list[str]
    env: list[str]
    queue: str
    retries: int
    timeout_seconds: int
    resources: ResourcesBody
    network: str
    artifacts_path: str
    output_bytes: int | None
    on_output_limit: str
    user: str | None
    secrets: list[SecretGrantBody]
    """The secrets the job gets (names and where; never values)."""
    params: list[ParamBody]
    revision: int
    created_at: str | None
    created_at_ms: int | None
    updated_at: str | None
    updated_at_ms: int | None

    @classmethod
    def of(cls, job: JobDefinition, *, env_values: bool) -> JobBody:
        return cls(
            name=job.name,
            description=job.description,
            source=job.source,
            path=job.path or "",
            dockerfile=job.dockerfile,
            command=list(job.command),
            env=list(job.env) if env_values else masked_env(job.env),
            queue=job.queue,
            retries=job.retries,
            timeout_seconds=job.timeout_seconds,
            resources=ResourcesBody.of(job.resources),
            network=job.network,
            artifacts_path=job.artifacts_path,
            output_bytes=job.output_bytes,
            on_output_limit=OutputLimitAction(job.on_output_limit).value,
            user=job.user,
            secrets=[SecretGrantBody.of(grant) for grant in job.secrets],
            params=[ParamBody.of(spec) for spec in job.params],
            revision=job.revision,
            created_at=rfc3339(job.created_at),
            created_at_ms=epoch_ms(job.created_at),
            updated_at=rfc3339(job.updated_at),
            updated_at_ms=epoch_ms(job.updated_at),
            **{api: value or "" for api, value in registry.to_api(job.source_fields).items()},
        )


class JobOne(Schema):
    job: JobBody


class JobList(Schema):
    jobs: list[JobBody]
    total: int
    limit: int
    offset: int


class RunStarted(Schema):
    """``POST /jobs/{name}/run``: the queued task and the run it will execute."""

    task_id: str
    run_id: str


class JobDeleted(Schema):
    deleted: bool
    name: str


class SourceArtifactBody(Schema):
    """The verified source of a job's latest run that fetched one (``GET
    /jobs/{name}/artifact/meta``): the tarball as verified, or for git the ``git archive``
    of the resolved commit."""

    job: str
    name: str
    filename: str
    """Seed 003's name for ``name``: the download's file name."""
    downloadable: bool
    """Always ``true`` here: ``GET /jobs/{name}/artifact`` serves these bytes."""
    size_bytes: int
    sha256: str
    content_type: str
    source: str | None
    """The job's current source kind (``None`` when the job was deleted since)."""
    commit_sha: str | None
    source_sha256: str
    run_id: str
    run_status: str
    created_at: str | None
    created_at_ms: int | None

    @classmethod
    def of(
        cls,
        run: Run,
        *,
        name: str,
        size: int,
        content_type: str,
        definition: JobDefinition | None,
    ) -> SourceArtifactBody:
        assert run.source_sha256 is not None
        created = run.fetching_at or run.queued_at
        return cls(
            job=run.job,
            name=name,
            filename=name,
            downloadable=True,
            size_bytes=size,
            sha256=run.source_sha256,
            content_type=content_type,
            source=None if definition is None else definition.source,
            commit_sha=run.commit_sha,
            source_sha256=run.source_sha256,
            run_id=run.run_id,
            run_status=run.status.value,
            created_at=rfc3339(created),
            created_at_ms=epoch_ms(created),
        )


class SourceArtifactOne(Schema):
    artifact: SourceArtifactBody

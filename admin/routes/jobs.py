"""Container jobs: list, detail, upsert, delete, run now, job events (one item per run, in
seed 003's shape: :mod:`admin.seed.job_events`), and the source artifact of a job's latest
run (metadata and download, with byte ranges).

Definitions are validated when saved by :func:`jobrunner.definition.validate_definition`
with the job runner's own settings (allowlists, schemes, sha format, path escapes): a
broken rule is a 400 naming the field, exactly as the runner would refuse it at run time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from admin.auth import Identity, RequireViewer
from admin.config import Role
from admin.deps import ArtifactsDep, JobsDep, RunnerDep, RunsDep, ServicesDep
from admin.downloads import file_response
from admin.errors import InvalidRequest, NotFound
from admin.mutations import Mutation, mutation
from admin.schemas import MAX_INT
from admin.schemas_jobs import (
    JobBody,
    JobDeleted,
    JobList,
    JobOne,
    JobRequest,
    RunStarted,
    SourceArtifactBody,
    SourceArtifactOne,
)
from admin.schemas_params import RunRequest
from admin.seed.items import seed_items_of
from admin.seed.job_events import JobEventList
from admin.yaml_body import YamlBodyRoute
from jobrunner.config import RunnerConfig
from jobrunner.definition import validate_definition
from jobrunner.errors import InvalidDefinition, UnknownSecret
from jobrunner.runner import JobRunner
from jobrunner.sources import registry
from store.artifacts import ArtifactNotFound, ArtifactStore
from store.jobs.errors import InvalidJobRecord
from store.jobs.models import JobDefinition, Run, RunTrigger
from store.jobs.protocol import RunStore
from store.secrets.protocol import SECRET_NAME, SecretStore

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/jobs", tags=["jobs"])

SOURCE_SCAN_RUNS: Final = 1000
"""How many of a job's newest runs are searched for one with a stored source artifact."""

Upsert = Annotated[Mutation, Depends(mutation("job.upsert", Role.ADMIN, body_target="name"))]
Delete = Annotated[Mutation, Depends(mutation("job.delete", Role.ADMIN, target="name", risky=True))]
RunNow = Annotated[Mutation, Depends(mutation("job.run", Role.OPERATOR, target="name", risky=True))]

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]


def runner_config(runner: JobRunner) -> RunnerConfig:
    """The job runner's settings: saved definitions are checked with exactly the rules the
    runner applies at run time."""
    return runner.config


# --- definitions ------------------------------------------------------------------------


@router.get("", response_model=JobList)
async def list_jobs(
    caller: RequireViewer, jobs: JobsDep, limit: Limit = 100, offset: Offset = 0
) -> JobList:
    """Job definitions ordered by name (a viewer sees env names, not values: ``KEY=***``)."""
    page = await jobs.list_jobs(limit=limit, offset=offset)
    shown = [JobBody.of(job, env_values=env_visible(caller)) for job in page.items]
    return JobList(jobs=shown, total=page.total, limit=limit, offset=offset)


@router.get("/events", response_model=JobEventList)
async def job_events(
    request: Request,
    _: RequireViewer,
    services: ServicesDep,
    name: str | None = None,
    limit: Limit = 25,
) -> JSONResponse:
    """The newest ``limit`` runs of job ``name`` (of every job without it), newest first,
    one item per run in its latest state, in seed 003's shape."""
    items = seed_items_of(request.app, services)
    return JSONResponse({"events": await items.job_events(name or None, limit)})


@router.get("/{name}", response_model=JobOne)
async def get_job(name: str, caller: RequireViewer, jobs: JobsDep) -> JobOne:
    """One job definition (a viewer sees env names, not values: ``KEY=***``)."""
    job = await jobs.get(name)
    if job is None:
        raise NotFound(f"job {name!r} not found")
    return JobOne(job=JobBody.of(job, env_values=env_visible(caller)))


def env_visible(caller: Identity) -> bool:
    """Whether ``caller`` may read env values (operators and admins)."""
    return caller.role >= Role.OPERATOR


async def upsert_job(
    body: JobRequest, audit: Upsert, jobs: JobsDep, runner: RunnerDep, services: ServicesDep
) -> JSONResponse:
    """Create (201) or replace (200) a job definition, validated with the runner's
    settings; a broken rule is a 400 naming the field, a secret that does not exist a 400
    naming it. The body is JSON, or the same definition as YAML (``Content-Type:
    application/yaml``; a YAML error is a 400 naming its line and column)."""
    secrets = services.secrets
    config = runner_config(runner)
    existing = None
    if body.secrets is None or body.params is None:
        existing = await jobs.get(body.name)
    try:
        definition = validate_definition(
            body.definition(default_queue=runner.default_queue, existing=existing), config
        )
        source = registry.get(definition.source)
        await asyncio.to_thread(source.check_saved, definition.source_fields, config)
        await check_secrets_exist(definition, secrets)
    except InvalidDefinition as exc:
        raise InvalidRequest(str(exc)) from None
    try:
        saved, created = await jobs.upsert(definition)
    except InvalidJobRecord as exc:
        raise InvalidRequest(str(exc)) from None
    await audit.ok(f"{'created' if created else 'updated'} revision={saved.revision}")
    logger.info(
        "job saved", extra={"job": saved.name, "revision": saved.revision, "actor": audit.actor}
    )
    content = JobOne(job=JobBody.of(saved, env_values=True)).model_dump(by_alias=True)
    return JSONResponse(content, status_code=201 if created else 200)


# The definition may also be sent as YAML (application/yaml): the same fields, validation
# and audit (admin.yaml_body).
router.add_api_route(
    "",
    upsert_job,
    methods=["POST"],
    response_model=JobOne,
    status_code=200,
    responses={201: {"model": JobOne}},
    route_class_override=YamlBodyRoute,
    openapi_extra={
        "requestBody": {
            "content": {"application/yaml": {"schema": {"$ref": "#/components/schemas/JobRequest"}}}
        }
    },
)


@router.delete("/{name}", response_model=JobDeleted)
async def delete_job(name: str, audit: Delete, jobs: JobsDep) -> JobDeleted:
    """Delete a definition; its runs and their history are kept."""
    if not await jobs.delete(name):
        raise NotFound(f"job {name!r} not found")
    await audit.ok("deleted")
    return JobDeleted(deleted=True, name=name)


async def check_secrets_exist(definition: JobDefinition, secrets: SecretStore | None) -> None:
    """Refuse a definition granted a secret that does not exist (naming it)."""
    if not definition.secrets:
        return
    found = (
        set()
        if secrets is None
        else await secrets.existing(
            [g.name for g in definition.secrets if SECRET_NAME.fullmatch(g.name)]
        )
    )
    for index, grant in enumerate(definition.secrets):
        if grant.name not in found:
            raise UnknownSecret(f"secrets[{index}].name", grant.name)


@router.post("/{name}/run", response_model=RunStarted)
async def run_job(
    name: str, audit: RunNow, runner: RunnerDep, body: RunRequest | None = None
) -> RunStarted:
    """Queue a run now: the ``job.run`` task and the run record. No body (or ``{}``) runs
    with the job's defaults; ``{"params": {...}}`` overrides parameters marked
    ``overridable`` (any other, or a value breaking its declaration, is a 400 naming the
    parameter, and nothing is queued)."""
    params = None if body is None else body.params
    task_id, run_id = await runner.submit(
        name, trigger=RunTrigger.API, actor=audit.actor, params=params
    )
    await audit.ok(f"taskId={task_id} runId={run_id}")
    return RunStarted(task_id=str(task_id), run_id=run_id)


# --- the source artifact ----------------------------------------------------------------


async def _source_of(name: str, runs: RunStore, artifacts: ArtifactStore) -> tuple[Run, int, bool]:
    """The newest run of job ``name`` whose verified source is in the artifact store, the
    source's size and whether it is gzip; 404 when no run has stored one."""
    offset, page_size = 0, 50
    while offset < SOURCE_SCAN_RUNS:
        page = await runs.list_runs(job=name, limit=page_size, offset=offset)
        for run in page.items:
            if run.source_sha256 is None:
                continue
            try:
                size, gzip = await asyncio.to_thread(_blob_facts, artifacts, run.source_sha256)
            except ArtifactNotFound:
                continue
            return run, size, gzip
        if len(page.items) < page_size:
            break
        offset += page_size
    raise NotFound(f"job {name!r} has no source artifact: no run has fetched its source yet")


def _blob_facts(artifacts: ArtifactStore, sha256: str) -> tuple[int, bool]:
    with artifacts.open(sha256) as blob:
        magic = blob.read(2)
    return artifacts.size(sha256), magic == b"\x1f\x8b"


def _artifact_name(run: Run, definition: JobDefinition | None, gzip: bool) -> str:
    """The download's file name: the one the job's source type gives while the definition
    still names that very file (a tarball's own name), else
    ``<job>-<commit or sha prefix>.tar[.gz]``."""
    assert run.source_sha256 is not None
    suffix = ".tar.gz" if gzip else ".tar"
    if run.commit_sha:
        return f"{run.job}-{run.commit_sha[:12]}{suffix}"
    if definition is not None:
        source = registry.get(definition.source)
        base = source.download_name(definition.source_fields, run.source_sha256)
        if base:
            return base
    return f"{run.job}-{run.source_sha256[:12]}{suffix}"


@router.get("/{name}/artifact/meta", response_model=SourceArtifactOne)
async def source_artifact_meta(
    name: str, _: RequireViewer, jobs: JobsDep, runs: RunsDep, artifacts: ArtifactsDep
) -> SourceArtifactOne:
    """Metadata of the verified source of the job's latest run that fetched one."""
    run, size, gzip = await _source_of(name, runs, artifacts)
    definition = await jobs.get(name)
    return SourceArtifactOne(
        artifact=SourceArtifactBody.of(
            run,
            name=_artifact_name(run, definition, gzip),
            size=size,
            content_type=_content_type(gzip),
            definition=definition,
        )
    )


_SOURCE_TYPES: dict[str, Any] = {"application/gzip": {}, "application/x-tar": {}}
"""The media types of a source artifact (see :func:`_content_type`)."""


@router.get(
    "/{name}/artifact",
    response_class=Response,
    responses={
        200: {"content": _SOURCE_TYPES, "description": "The source (gzip or plain tar)"},
        206: {"content": _SOURCE_TYPES, "description": "The requested byte range"},
        416: {"description": "The range selects no byte of the file"},
    },
)
async def source_artifact(
    name: str,
    request: Request,
    _: RequireViewer,
    jobs: JobsDep,
    runs: RunsDep,
    artifacts: ArtifactsDep,
) -> Response:
    """The bytes of the source that :func:`source_artifact_meta` describes, streamed, with
    ``Range`` support (one range; 206, or 416 when it selects nothing)."""
    run, _size, gzip = await _source_of(name, runs, artifacts)
    assert run.source_sha256 is not None
    definition = await jobs.get(name)
    try:
        return await asyncio.to_thread(
            file_response,
            request,
            artifacts.path(run.source_sha256),
            filename=_artifact_name(run, definition, gzip),
            media_type=_content_type(gzip),
            etag=run.source_sha256,
            # The first is seed 003's name, the second Longshore's (as run artifacts).
            headers={"x-tarball-sha256": run.source_sha256, "x-content-sha256": run.source_sha256},
        )
    except FileNotFoundError:
        raise NotFound(f"job {name!r}: the source artifact is no longer stored") from None


def _content_type(gzip: bool) -> str:
    return "application/gzip" if gzip else "application/x-tar"

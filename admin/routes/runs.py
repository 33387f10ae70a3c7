"""Runs: list and filter, detail, the retained output (plain or followed live over SSE),
cancel, and the run's artifacts (list, download with HTTP ranges).

Where a run's output is: once the container has exited, the runner stores the retained
output (head and tail, SPEC §4) in the artifact store and records its digest as
``output_sha256``. Until then — and for a run that ended without one (it failed before its
container ran, or its worker died) — the output is what the run's ``RunOutputEmitted``
events carry, read from the event store.

``GET /runs/{id}/output?follow=true`` is a second route on the same path, taken only when
``follow`` is true (:class:`_FollowRoute`): the run's events as server-sent events, written
by the same engine as ``/events`` (:mod:`admin.streams.run_output` says what it sends; it
resumes after ``Last-Event-ID`` or ``?lastEventId=`` and ends with the app's streams). The
plain route declares ``follow`` too, so a value that is not a boolean is a 400 naming it.

Downloads (the stored output, artifacts) go through :func:`admin.downloads.file_response`:
streamed, with ``Content-Length``, an ``ETag`` (the blob's sha256) and byte ranges.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from admin.auth import RequireViewer
from admin.config import Role
from admin.deps import ArtifactsDep, EventsDep, RunsDep, ServicesDep
from admin.downloads import file_response
from admin.errors import Conflict, InvalidRequest, NotFound
from admin.mutations import Mutation, mutation
from admin.run_status_detail import waiting_detail
from admin.schemas import MAX_INT, ErrorBody
from admin.schemas_runs import RunArtifactBody, RunArtifactList, RunBody, RunDetail, RunList, RunOne
from admin.streams.hub import streams_of
from admin.streams.options import options_of
from admin.streams.response import EventStreamResponse, event_stream
from admin.streams.resume import ResumePoint
from admin.streams.run_output import EVENT_PAGE, OUTPUT, FollowTiming, follow_run_output
from store.events import EventStore
from store.jobs.errors import RunNotFound
from store.jobs.models import JOB_NAME, Run, RunStatus
from store.jobs.protocol import RunStore

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/runs", tags=["runs"])

CancelRun = Annotated[
    Mutation, Depends(mutation("run.cancel", Role.OPERATOR, target="run_id", risky=True))
]

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]

TEXT: Final = "text/plain; charset=utf-8"
RUN_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What a run id looks like (the store's rule); anything else cannot name a run."""

RETRY_MS: Final = 2000
"""The reconnection delay suggested to the followers of a run's output."""
IDLE_CHECK_SECONDS: Final = 5.0
"""How often a quiet follow stream re-reads the run record, to end the stream of a run
that finished without its final event reaching the event store (it is appended after the
final transition, within the runner's event timeout)."""
_TRUE: Final = frozenset({"1", "on", "t", "true", "y", "yes"})
"""What pydantic reads as ``True`` for a ``bool`` query parameter."""


# --- lookups --------------------------------------------------------------------------------


async def _get_run(runs: RunStore, run_id: str) -> Run:
    run = await runs.get(run_id) if RUN_ID.fullmatch(run_id) else None
    if run is None:
        raise NotFound(f"run {run_id!r} not found")
    return run


async def _existing_run(run_id: str, runs: RunsDep) -> Run:
    """The run named by the path (404 otherwise), resolved before a stream starts."""
    return await _get_run(runs, run_id)


ExistingRun = Annotated[Run, Depends(_existing_run)]


# --- list, detail ---------------------------------------------------------------------------


@router.get("", response_model=RunList)
async def list_runs(
    _: RequireViewer,
    runs: RunsDep,
    job: str | None = None,
    status: RunStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> RunList:
    """Runs, newest first, optionally of one ``job`` and in one ``status``."""
    if job is not None and not JOB_NAME.fullmatch(job):
        raise InvalidRequest(f"job: {job!r} is not a job name ({JOB_NAME.pattern})")
    page = await runs.list_runs(job=job, status=status, limit=limit, offset=offset)
    return RunList(
        runs=[RunBody.of(run) for run in page.items], total=page.total, limit=limit, offset=offset
    )


@router.get("/{run_id}", response_model=RunOne)
async def get_run(_: RequireViewer, run: ExistingRun, services: ServicesDep) -> RunOne:
    detail = None
    if not run.status.is_final and services.events is not None:
        detail = await waiting_detail(services.events, run.run_id)
    return RunOne(run=RunDetail.of(run, detail))


# --- cancel ---------------------------------------------------------------------------------


@router.post(
    "/{run_id}/cancel",
    response_model=RunOne,
    responses={409: {"model": ErrorBody, "description": "The run has already finished"}},
)
async def cancel_run(run_id: str, audit: CancelRun, runs: RunsDep) -> RunOne:
    """Ask for the run to be cancelled (no body). The request is recorded on the run
    (``cancelRequested``); the worker executing it stops its container and records
    ``cancelled``, and a queued run is cancelled when a worker picks it up. A run that has
    finished is a 409."""
    run = await _get_run(runs, run_id)
    if not run.status.is_final:
        try:
            run = await runs.request_cancel(run_id)
        except RunNotFound:
            raise NotFound(f"run {run_id!r} not found") from None
    # Final before the request, or by the time it was made (then it was not recorded).
    if run.status.is_final:
        raise Conflict(
            f"run {run_id!r} has already finished ({run.status.value}); "
            "only a queued or running run can be cancelled",
            code="run_finished",
        )
    await audit.ok(f"status={run.status.value}")
    return RunOne(run=RunDetail.of(run))


# --- output ---------------------------------------------------------------------------------

_OUTPUT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "The run's retained output as UTF-8 text; with `follow=true`, server-sent events: "
            "`output` (data `{text, seq, offset, bytes}`, id = the durable event id), "
            "`status` (stage changes) and a final `end` (data: the run's final status)"
        ),
        "content": {"text/plain": {}, "text/event-stream": {}},
    },
    206: {
        "description": "The requested byte range of the retained output (`Range: bytes=...`)",
        "content": {"text/plain": {}},
    },
    416: {"description": "The range lies outside the retained output"},
}


class _FollowRoute(APIRoute):
    """Matches only when the query says ``follow`` is true, so ``GET .../output`` and
    ``GET .../output?follow=true`` can be two routes on one path (plain text and SSE)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.FULL and not _follows(scope):
            return Match.NONE, {}
        return match, child


def _follows(scope: Scope) -> bool:
    query = scope.get("query_string", b"").decode("latin-1")
    values = [value for key, value in parse_qsl(query, keep_blank_values=True) if key == "follow"]
    return bool(values) and values[-1].strip().lower() in _TRUE


async def _follow_output(
    request: Request,
    _: RequireViewer,
    run: ExistingRun,
    after: ResumePoint,
    events: EventsDep,
    runs: RunsDep,
) -> EventStreamResponse:
    """The run's events as server-sent events (see :mod:`admin.streams.run_output`)."""

    def dropped(last_id: int) -> None:
        logger.info(
            "output follower fell behind; resubscribing",
            extra={"run_id": run.run_id, "last_id": last_id},
        )

    timing = FollowTiming(
        retry_ms=RETRY_MS,
        idle_check_seconds=IDLE_CHECK_SECONDS,
        keepalive_seconds=options_of(request.app).heartbeat_seconds,
    )
    body = follow_run_output(
        events,
        runs,
        run,
        after_id=0 if after is None else after,  # without one: from the run's first event
        hub=streams_of(request.app),
        timing=timing,
        on_drop=dropped,
    )
    return event_stream(body)


router.add_api_route(
    "/{run_id}/output",
    _follow_output,
    methods=["GET"],
    response_class=EventStreamResponse,
    route_class_override=_FollowRoute,
    include_in_schema=False,  # documented on the plain route below (one operation per path)
    name="follow_run_output",
)


@router.get("/{run_id}/output", response_class=Response, responses=_OUTPUT_RESPONSES)
async def get_output(
    request: Request,
    _: RequireViewer,
    run: ExistingRun,
    events: EventsDep,
    artifacts: ArtifactsDep,
    follow: bool = False,
) -> Response:
    """The run's output: the full retained output once its container has exited, the
    output so far while it runs. ``follow=true`` streams it live as server-sent events
    until the run ends (resume with ``Last-Event-ID`` or ``lastEventId``)."""
    del follow  # true is taken by the follow route
    digest = run.output_sha256
    if digest is not None:
        with contextlib.suppress(FileNotFoundError):
            return file_response(
                request,
                artifacts.path(digest),
                filename=f"run-{run.run_id}.log",
                media_type=TEXT,
                etag=digest,
                headers={"content-disposition": f'inline; filename="run-{run.run_id}.log"'},
            )
    return StreamingResponse(_output_from_events(events, run.run_id), media_type=TEXT)


async def _output_from_events(events: EventStore, run_id: str) -> AsyncIterator[bytes]:
    after = 0
    while True:
        page = await events.by_run(run_id, after_id=after, limit=EVENT_PAGE)
        if not page:
            return
        text = "".join(str(e.data.get("text", "")) for e in page if e.type == OUTPUT)
        if text:
            yield text.encode("utf-8")
        after = page[-1].id


# --- artifacts ------------------------------------------------------------------------------


@router.get("/{run_id}/artifacts", response_model=RunArtifactList)
async def list_artifacts(_: RequireViewer, run: ExistingRun) -> RunArtifactList:
    return RunArtifactList(artifacts=[RunArtifactBody.of(a) for a in run.artifacts])


@router.get(
    "/{run_id}/artifacts/{name:path}",
    response_class=Response,
    responses={
        200: {"description": "The artifact's bytes", "content": {"application/octet-stream": {}}},
        206: {
            "description": "The requested byte range (`Range: bytes=...`)",
            "content": {"application/octet-stream": {}},
        },
        416: {"description": "The range lies outside the artifact"},
    },
)
async def download_artifact(
    name: str,
    request: Request,
    _: RequireViewer,
    run: ExistingRun,
    artifacts: ArtifactsDep,
) -> Response:
    """One artifact's bytes (``name`` as listed, may contain ``/``), with
    ``Content-Disposition``, a strong ``ETag`` (its sha256) and single byte ranges
    (``Range``, ``If-Range``; see :mod:`admin.downloads`)."""
    # The name is only ever compared with the run's recorded artifacts; the bytes are found
    # by the recorded digest, never by a path made from the request.
    artifact = run.artifact(name)
    if artifact is None:
        raise NotFound(f"run {run.run_id!r} has no artifact {name!r}")
    try:
        return file_response(
            request, artifacts.path(artifact.sha256), filename=artifact.name, etag=artifact.sha256
        )
    except FileNotFoundError:
        raise NotFound(f"the bytes of artifact {name!r} are no longer stored") from None

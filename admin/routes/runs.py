"""Runs: list and filter, detail, the retained output (plain or followed live over SSE),
cancel, and the run's artifacts (list, download with HTTP ranges).

Where a run's output is: once the container has exited, the runner stores the retained
output (head and tail, SPEC §4) in the artifact store and records its digest as
``output_sha256``. Until then — and for a run that ended without one (it failed before its
container ran, or its worker died) — the output is what the run's ``RunOutputEmitted``
events carry, read from the event store.

``GET /runs/{id}/output?follow=true`` is a second route on the same path, taken only when
``follow`` is true (:class:`_FollowRoute`): it is an async generator, streamed by FastAPI
as server-sent events (``EventSourceResponse``: keep-alive comments, teardown on
disconnect). The plain route declares ``follow`` too, so a value that is not a boolean is a
400 naming it. The stream: a ``retry`` hint, then the run's events after ``Last-Event-ID``
(or ``?lastEventId=``), each with its durable event id — ``output`` (``{text, seq, offset,
bytes}``), ``status`` (a stage entered) — and last ``end`` (the final status, exit code and
error), after which it closes.

Downloads (the stored output, artifacts) go through :func:`admin.downloads.file_response`:
streamed, with ``Content-Length``, an ``ETag`` (the blob's sha256) and byte ranges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.routing import Match
from starlette.types import Scope

from admin.auth import RequireViewer
from admin.config import Role
from admin.deps import ArtifactsDep, EventsDep, RunsDep
from admin.downloads import file_response
from admin.errors import Conflict, InvalidRequest, NotFound
from admin.mutations import Mutation, mutation
from admin.routes.events import EventStreams, streams_of
from admin.schemas import MAX_INT, ErrorBody
from admin.schemas_runs import RunArtifactBody, RunArtifactList, RunBody, RunDetail, RunList, RunOne
from store.events.errors import SubscriberDropped
from store.events.models import Event, EventFilter, EventType, Stream
from store.events.protocol import EventStore, EventSubscription
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
"""The reconnection delay suggested to SSE clients."""
IDLE_CHECK_SECONDS: Final = 5.0
"""How often a quiet follow stream re-reads the run record, to end the stream of a run
that finished without its final event reaching the event store (it is appended after the
final transition, within the runner's event timeout)."""
EVENT_PAGE: Final = 1000

_OUTPUT: Final = EventType.RUN_OUTPUT_EMITTED.value
_ENDS: Final = frozenset(
    {
        EventType.RUN_SUCCEEDED.value,
        EventType.RUN_FAILED.value,
        EventType.RUN_TIMED_OUT.value,
        EventType.RUN_CANCELLED.value,
    }
)
_END_FIELDS: Final = (
    "status",
    "exitCode",
    "error",
    "finishedAt",
    "outputBytes",
    "outputTruncated",
)
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


def _event_id(value: str | None, where: str) -> int | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        raise InvalidRequest(f"{where}: must be a non-negative integer event id, got {value!r}")
    return int(text)


def _resume_from(
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    query_id: Annotated[str | None, Query(alias="lastEventId")] = None,
) -> int:
    """Where a follow stream resumes: after ``Last-Event-ID`` (what a browser sends when it
    reconnects, so it wins) or ``?lastEventId=``; 0 (the run's first event) without."""
    header = _event_id(last_event_id, "Last-Event-ID")
    if header is not None:
        return header
    query = _event_id(query_id, "lastEventId")
    return 0 if query is None else query


ResumeFrom = Annotated[int, Depends(_resume_from)]


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
async def get_run(_: RequireViewer, run: ExistingRun) -> RunOne:
    return RunOne(run=RunDetail.of(run))


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
    after_id: ResumeFrom,
    events: EventsDep,
    runs: RunsDep,
) -> AsyncIterator[ServerSentEvent]:
    yield ServerSentEvent(retry=RETRY_MS, comment=f"run {run.run_id}")
    async for item in _follow(events, runs, run, after_id, streams_of(request.app)):
        yield item


router.add_api_route(
    "/{run_id}/output",
    _follow_output,
    methods=["GET"],
    response_class=EventSourceResponse,
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
        text = "".join(str(e.data.get("text", "")) for e in page if e.type == _OUTPUT)
        if text:
            yield text.encode("utf-8")
        after = page[-1].id


async def _follow(
    events: EventStore, runs: RunStore, run: Run, after_id: int, streams: EventStreams
) -> AsyncIterator[ServerSentEvent]:
    """The run's events after ``after_id`` as SSE, ending with ``end``: a finished run's
    stored events, or a run still going followed live (until it ends, or until the app's
    streams are ended for a shutdown: :func:`admin.routes.events.end_event_streams`)."""
    stream = (
        _stored(events, run, after_id)
        if run.status.is_final
        else _live(events, runs, run, after_id, streams)
    )
    async for message in stream:
        yield message


async def _stored(events: EventStore, run: Run, after_id: int) -> AsyncIterator[ServerSentEvent]:
    """A finished run's stored events, page by page, up to its final event (or an ``end``
    made from the record when that event is not stored)."""
    last_id = after_id
    while True:
        page = await events.by_run(run.run_id, after_id=last_id, limit=EVENT_PAGE)
        if not page:
            yield _end_from_record(run)
            return
        for event in page:
            last_id = event.id
            message = _message(event)
            if message is not None:
                yield message
            if event.type in _ENDS:
                return


async def _live(
    events: EventStore, runs: RunStore, run: Run, after_id: int, streams: EventStreams
) -> AsyncIterator[ServerSentEvent]:
    """A run still going, through a subscription: its stored events, then live ones, without
    gap. A subscription dropped for reading too slowly is renewed from the last event sent,
    so nothing is lost. The next event is awaited in a task that survives the idle checks
    (never cancelled mid-read)."""
    last_id = after_id
    only_this_run = EventFilter(streams=frozenset({Stream.RUNS}), run_id=run.run_id)
    subscription = events.subscribe(last_id, only_this_run)
    streams.hold(subscription)
    waiting: asyncio.Task[Event | None] | None = None
    final_seen = False
    try:
        while True:
            if waiting is None:
                waiting = asyncio.create_task(_next(subscription))
            done, _ = await asyncio.wait({waiting}, timeout=IDLE_CHECK_SECONDS)
            if not done:
                current = await runs.get(run.run_id)
                if current is None or current.status.is_final:
                    # Give the final event one more period to arrive before ending without.
                    if final_seen:
                        yield _end_from_record(current or run)
                        return
                    final_seen = True
                continue
            finished, waiting = waiting, None
            try:
                received = finished.result()
            except SubscriberDropped:
                logger.info(
                    "output follower fell behind; resubscribing",
                    extra={"run_id": run.run_id, "last_id": last_id},
                )
                subscription.close()
                streams.release(subscription)
                subscription = events.subscribe(last_id, only_this_run)
                streams.hold(subscription)
                continue
            if received is None:  # the store or the server is closing: the client reconnects
                return
            last_id = received.id
            message = _message(received)
            if message is not None:
                yield message
            if received.type in _ENDS:
                return
    finally:
        # Not awaited: this may run while the stream itself is being cancelled.
        if waiting is not None:
            waiting.cancel()
            waiting.add_done_callback(_retrieve)
        subscription.close()
        streams.release(subscription)


def _retrieve(task: asyncio.Task[Event | None]) -> None:
    """Mark the outcome of an abandoned read as seen (no "never retrieved" warning)."""
    if not task.cancelled():
        task.exception()


async def _next(subscription: EventSubscription) -> Event | None:
    try:
        return await subscription.__anext__()
    except StopAsyncIteration:
        return None


def _message(event: Event) -> ServerSentEvent | None:
    data = event.data
    if event.type == _OUTPUT:
        return ServerSentEvent(
            id=str(event.id),
            event="output",
            data={
                "text": str(data.get("text", "")),
                "seq": data.get("seq"),
                "offset": data.get("offset"),
                "bytes": data.get("bytes"),
            },
        )
    if event.type in _ENDS:
        return ServerSentEvent(id=str(event.id), event="end", data=_end_data(data))
    if "status" in data:
        return ServerSentEvent(
            id=str(event.id), event="status", data={"status": data.get("status")}
        )
    return None


def _end_data(data: Mapping[str, Any]) -> dict[str, Any]:
    return {name: data.get(name) for name in _END_FIELDS}


def _end_from_record(run: Run) -> ServerSentEvent:
    """The ``end`` event of a run whose final event is not in the event store (no id: it
    is not a durable event)."""
    finished = None if run.finished_at is None else run.finished_at.isoformat()
    return ServerSentEvent(
        event="end",
        data={
            "status": run.status.value,
            "exitCode": run.exit_code,
            "error": run.error,
            "finishedAt": finished,
            "outputBytes": run.output_bytes,
            "outputTruncated": run.output_truncated,
        },
    )


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

"""A run's status changes: recorded in the run store, each followed by its event.

Every status a run reaches (``queued`` ... a final status) is appended to the event store
(stream ``runs``, key = the job) as its event (``RunQueued``, ``RunFetchStarted``, ...),
carrying the run's fields (:func:`run_event_data`). An event store that fails or is slow
never fails or holds up a run: the event is logged as lost and the run goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Unpack

from jobrunner.errors import describe
from store.background import TaskOwner
from store.errors import StoreUnavailable
from store.events.models import EventType, NewEvent, Stream
from store.events.protocol import EventStore
from store.jobs.errors import IllegalTransition
from store.jobs.models import NewRun, Run, RunFields, RunStatus
from store.jobs.protocol import RunStore

logger = logging.getLogger(__name__)

EVENT_TIMEOUT_SECONDS = 5.0
"""How long a status event may take to append before the run goes on without it."""

FINISH_RETRY_SECONDS = 600.0
"""How long a run's final status is retried while the store is unreachable: the end of a
container that finished during an outage is written when the store is back."""

_STATUS_EVENTS: Mapping[RunStatus, EventType] = {
    RunStatus.QUEUED: EventType.RUN_QUEUED,
    RunStatus.FETCHING: EventType.RUN_FETCH_STARTED,
    RunStatus.BUILDING: EventType.RUN_BUILD_STARTED,
    RunStatus.RUNNING: EventType.RUN_STARTED,
    RunStatus.SUCCEEDED: EventType.RUN_SUCCEEDED,
    RunStatus.FAILED: EventType.RUN_FAILED,
    RunStatus.TIMED_OUT: EventType.RUN_TIMED_OUT,
    RunStatus.CANCELLED: EventType.RUN_CANCELLED,
}


def run_event_data(run: Run) -> dict[str, Any]:
    """The fields of a run carried by each of its status events (camelCase, as the API)."""
    return {
        "runId": run.run_id,
        "job": run.job,
        "taskId": run.task_id,
        "attempt": run.attempt,
        "trigger": run.trigger.value,
        "actor": run.actor,
        "scheduleName": run.schedule_name,
        "status": run.status.value,
        "queuedAt": _iso(run.queued_at),
        "fetchingAt": _iso(run.fetching_at),
        "buildingAt": _iso(run.building_at),
        "runningAt": _iso(run.running_at),
        "finishedAt": _iso(run.finished_at),
        "exitCode": run.exit_code,
        "error": run.error,
        "commitSha": run.commit_sha,
        "sourceSha256": run.source_sha256,
        "imageId": run.image_id,
        "user": run.user,
        "outputBytes": run.output_bytes,
        "outputTruncated": run.output_truncated,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class RunRecorder:
    """Moves runs through their statuses in the run store and emits each status's event.

    A run's status events keep the order of its statuses, also when one was sent in the
    background (see :meth:`transition`). ``events`` ``None``: no events, only the store.
    """

    def __init__(self, runs: RunStore, events: EventStore | None) -> None:
        self._runs = runs
        self._events = events
        # Per run: the appends of its status events sent in the background, in order.
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._tasks = TaskOwner("run-events")

    async def create(self, new: NewRun) -> Run:
        """Record a ``queued`` run and emit its ``RunQueued`` event. Raises
        ``RunAlreadyExists`` (and emits nothing) when ``new.run_id`` is taken."""
        run = await self._runs.create(new)
        await self.emit(run)
        return run

    async def transition(
        self,
        run_id: str,
        status: RunStatus,
        *,
        event_data: Mapping[str, Any] | None = None,
        background: bool = False,
        **fields: Unpack[RunFields],
    ) -> Run:
        """Move the run to ``status`` and emit its event: after the run's earlier status
        events, and with ``background`` without waiting for it (the run goes on meanwhile;
        the next transition without ``background`` waits for it first, so a run's status
        events keep their order and its running and final events come after them).
        Raises ``IllegalTransition`` as the run store does."""
        run = await self._runs.transition(run_id, status, **fields)
        earlier = self._chains.pop(run_id, None)
        if background:
            self._chains[run_id] = self._tasks.spawn(
                self._emit_after(earlier, run, event_data), name=f"run-event-{run_id[:12]}"
            )
            return run
        if earlier is not None:
            await asyncio.shield(earlier)
        await self.emit(run, event_data)
        return run

    async def finish(
        self,
        run_id: str,
        status: RunStatus,
        *,
        event_data: Mapping[str, Any] | None = None,
        **fields: Unpack[RunFields],
    ) -> None:
        """The final transition; shielded so a cancelled handler still records it, and
        retried while the store is unreachable (up to :data:`FINISH_RETRY_SECONDS`). A run
        that is final already is left as it is (logged)."""
        loop = asyncio.get_running_loop()
        deadline, backoff = loop.time() + FINISH_RETRY_SECONDS, 0.2
        while True:
            try:
                change = self.transition(run_id, status, event_data=event_data, **fields)
                await asyncio.shield(change)
                return
            except IllegalTransition:
                logger.info("run already final", extra={"run_id": run_id, "status": status.value})
                return
            except StoreUnavailable as exc:
                if loop.time() >= deadline:
                    raise
                logger.warning(
                    "recording the end of a run failed; retrying",
                    extra={"run_id": run_id, "status": status.value, "error": str(exc)},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def late_result(self, run: Run, data: Mapping[str, Any]) -> None:
        """Emit ``RunLateResult``: a success of the run's attempt was written after its lease
        lapsed (``data`` says what it did). Never raises, as :meth:`emit`."""
        if self._events is None:
            return
        payload = {**run_event_data(run), **data}
        event = NewEvent(
            stream=Stream.RUNS,
            key=run.job,
            type=EventType.RUN_LATE_RESULT,
            run_id=run.run_id,
            data=payload,
        )
        try:
            await asyncio.wait_for(self._events.append(event), EVENT_TIMEOUT_SECONDS)
        except Exception as exc:
            logger.warning(
                "could not append a run event",
                extra={"run_id": run.run_id, "type": event.type, "error": describe(exc)},
            )

    async def waiting(
        self, run_id: str, detail: str, fault: BaseException, retry_in: float, waited: float
    ) -> None:
        """Emit a ``RunWaiting`` event (after the run's earlier status events): the run waits
        for its infrastructure (``detail``); ``fault`` is named by its type only (its message
        may hold host paths or addresses). Never raises."""
        if self._events is None:
            return
        earlier = self._chains.pop(run_id, None)
        if earlier is not None:
            await asyncio.shield(earlier)
        try:
            run = await self._runs.get(run_id)
        except Exception as exc:
            logger.warning(
                "could not read a waiting run", extra={"run_id": run_id, "error": str(exc)}
            )
            return
        if run is None:
            return
        data = run_event_data(run)
        data.update(
            detail=detail,
            reason=type(fault).__name__,
            retryInSeconds=round(retry_in, 3),
            waitedSeconds=round(waited, 3),
        )
        await self._append(run, EventType.RUN_WAITING, data)

    def forget(self, run_id: str) -> None:
        """Stop ordering events after the run's background ones: its attempt is over (its
        final transition, if it failed, left a chain behind)."""
        self._chains.pop(run_id, None)

    async def emit(self, run: Run, extra: Mapping[str, Any] | None = None) -> None:
        """Append the event of the run's current status. Never raises: an event store that
        fails or is slow (:data:`EVENT_TIMEOUT_SECONDS`) is logged, and the run goes on."""
        if self._events is None:
            return
        data = run_event_data(run)
        data.update(extra or {})
        await self._append(run, _STATUS_EVENTS[run.status], data)

    async def _append(self, run: Run, kind: EventType, data: dict[str, Any]) -> None:
        if self._events is None:
            return
        try:
            # ``NewEvent.run`` would take the ``job`` field for its own argument.
            event = NewEvent(
                stream=Stream.RUNS, key=run.job, type=kind, run_id=run.run_id, data=data
            )
            await asyncio.wait_for(self._events.append(event), EVENT_TIMEOUT_SECONDS)
        except Exception as exc:
            logger.warning(
                "could not append a run event",
                extra={"run_id": run.run_id, "type": kind.value, "error": describe(exc)},
            )

    async def close(self) -> None:
        """Wait for the status events still being sent in the background (each gives up
        after :data:`EVENT_TIMEOUT_SECONDS`)."""
        await self._tasks.close(cancel=False)

    async def _emit_after(
        self, earlier: asyncio.Task[None] | None, run: Run, extra: Mapping[str, Any] | None
    ) -> None:
        if earlier is not None:
            await earlier
        await self.emit(run, extra)

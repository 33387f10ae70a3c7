"""Seed 003's schedule events: one item per firing of a schedule — a task it enqueued, in
the state that task (or the job run it became) is in now, or a skipped firing
(``GET /schedules/events`` and the ``schedule_events`` snapshot of ``/events`` build them
here, so the two cannot differ).

A firing's ``status`` follows its job run when the task runs a job (see
:func:`admin.seed.status.run_status`), else its queue task (ready or scheduled →
``queued``, running → ``running``, done → ``completed``, dead → ``failed``); a task no
longer kept (finished tasks are removed once their key is no longer retained) is
``completed``. A skipped firing is ``cancelled``, with the reason in ``error``; it enqueued
nothing, so its ``taskId`` is ``skipped-<event id>`` (clients key items by ``taskId``).
Schedule changes (created, paused, resumed, deleted) are not firings: they are in the
audit log and the stream's fine-grained events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from admin.run_errors import shown_error
from admin.schemas import Schema, epoch_ms, rfc3339
from admin.seed.output_tail import OutputTails
from admin.seed.status import SeedStatus, run_status, task_status
from scheduler.firing.models import SCHEDULE_SKIPPED
from scheduler.manager import ScheduleManager
from store.events.models import Event, EventFilter, EventType, Stream
from store.events.protocol import EventStore
from store.jobs.models import Run
from store.jobs.protocol import RunStore
from store.queue.models import Task, TaskState
from store.queue.protocol import TaskQueue

FIRINGS: Final = frozenset({EventType.SCHEDULE_FIRED.value, SCHEDULE_SKIPPED})
SCAN_MAX: Final = 65536
"""The most events read back to find the newest firings."""
_WAITING = (TaskState.READY, TaskState.SCHEDULED, TaskState.RUNNING)


class ScheduleEventItem(Schema):
    """One firing (seed 003's schedule event). Every field is a string or a number, never
    null (``""`` / ``-1`` when unknown); ``finishedAt`` and ``finishedAtMs`` are absent
    until the firing's task ends."""

    task_id: str
    name: str
    schedule: str
    """Longshore's name for ``name``."""
    spec: str
    """The spec the schedule had when it fired."""
    durable: bool
    """Always ``true``: every schedule is persisted."""
    status: str
    queue: str
    started_at: str
    started_at_ms: int
    """When the job run (or task) started; the firing time while it waits."""
    finished_at: str | None = None
    finished_at_ms: int | None = None
    duration_ms: int
    result: str
    """The end of the job run's output (at most 240 characters), ``""`` for other tasks."""
    error: str
    metadata: dict[str, str]
    """``schedule.trigger``, ``schedule.key``, ``schedule.scheduled_at``, ``task.id``,
    ``task.state``, ``run.id``, ``run.status``, ``skip.reason``, ... when known."""
    id: int
    """The event's durable id."""
    type: str
    """``ScheduleFired`` or ``ScheduleSkipped``."""
    trigger: str
    """``tick``, ``catch_up`` or ``manual``."""
    key: str
    reason: str
    """Why a firing was skipped (``overlap``, ``misfire``, ``paused``, ...)."""
    detail: str
    run_id: str
    scheduled_at: str
    scheduled_at_ms: int
    """The tick (or when a manual run was asked for)."""
    at: str
    at_ms: int
    """When the firing was recorded."""


async def newest_firings(events: EventStore, name: str | None, limit: int) -> list[Event]:
    """The newest ``limit`` firings of schedule ``name`` (of every schedule, deleted ones
    included, without it), newest first. The read-back grows until ``limit`` are found, the
    history is exhausted or :data:`SCAN_MAX` events were read."""
    window = max(limit * 2, 64)
    only = EventFilter(streams=frozenset({Stream.SCHEDULES}), types=FIRINGS)
    while True:
        if name is not None:
            batch = await events.latest(Stream.SCHEDULES, name, window)
            exhausted = len(batch) < window
        else:
            # Ids are shared by all streams: (last - window, last] holds at most ``window``.
            after = max(events.last_id - window, 0)
            batch = (await events.since(after, only, limit=window))[::-1]
            exhausted = after == 0
        found = [event for event in batch if event.type in FIRINGS]
        if len(found) >= limit or exhausted or window >= SCAN_MAX:
            return found[:limit]
        window *= 4


async def schedule_event_items(
    *,
    events: EventStore,
    queue: TaskQueue,
    runs: RunStore | None,
    schedules: ScheduleManager | None,
    tails: OutputTails,
    name: str | None,
    limit: int,
) -> list[ScheduleEventItem]:
    """The items of the newest ``limit`` firings (see :func:`newest_firings`)."""
    specs: dict[str, str] = {}
    items = []
    for event in await newest_firings(events, name, limit):
        spec = event.data.get("spec")
        if not isinstance(spec, str):
            if event.key not in specs:
                found = None if schedules is None else await schedules.schedule(event.key)
                specs[event.key] = "" if found is None else found.spec
            spec = specs[event.key]
        item = _base(event, spec)
        task_id = event.data.get("taskId")
        if event.type == SCHEDULE_SKIPPED:
            _skipped(item, event)
        elif isinstance(task_id, int):
            task = await queue.get_task(task_id)
            attempts = [] if runs is None else await runs.find_by_task(task_id)
            run = attempts[-1] if attempts else None
            result = "" if run is None else await tails.tail(run.output_sha256)
            _fired(item, task, run, result)
        items.append(item)
    return items


def _base(event: Event, spec: str) -> ScheduleEventItem:
    data = event.data
    fired = _moment(data.get("firedAt")) or event.at
    scheduled = _moment(data.get("scheduledAt")) or fired
    task_id = data.get("taskId")
    metadata = {
        "schedule.trigger": _text(data.get("trigger")),
        "schedule.key": _text(data.get("key")),
        "schedule.scheduled_at": rfc3339(scheduled) or "",
    }
    if data.get("replacedTaskId") is not None:
        metadata["schedule.replaced_task_id"] = _text(data["replacedTaskId"])
    return ScheduleEventItem(
        task_id="" if task_id is None else str(task_id),
        name=event.key,
        schedule=event.key,
        spec=spec,
        durable=True,
        status=SeedStatus.QUEUED.value,
        queue=_text(data.get("queue")),
        started_at=rfc3339(fired) or "",
        started_at_ms=epoch_ms(fired) or 0,
        duration_ms=-1,
        result="",
        error="",
        metadata=metadata,
        id=event.id,
        type=event.type,
        trigger=_text(data.get("trigger")),
        key=_text(data.get("key")),
        reason="",
        detail="",
        run_id="",
        scheduled_at=rfc3339(scheduled) or "",
        scheduled_at_ms=epoch_ms(scheduled) or 0,
        at=rfc3339(event.at) or "",
        at_ms=event.at_ms,
    )


def _skipped(item: ScheduleEventItem, event: Event) -> None:
    data = event.data
    item.reason, item.detail = _text(data.get("reason")), _text(data.get("detail"))
    item.status = SeedStatus.CANCELLED.value
    item.error = f"skipped ({item.reason}): {item.detail}" if item.detail else "skipped"
    item.metadata["skip.reason"] = item.reason
    if item.task_id:
        item.metadata["skip.task_id"] = item.task_id  # the task it overlapped
    item.task_id = f"skipped-{event.id}"
    _finish(item, _moment(data.get("firedAt")) or event.at)  # ended as it was skipped


def _fired(item: ScheduleEventItem, task: Task | None, run: Run | None, result: str) -> None:
    metadata = item.metadata
    metadata["task.id"] = item.task_id
    metadata["task.state"] = "gone" if task is None else task.state.value
    if task is not None and not item.queue:
        item.queue = task.queue
    if run is not None and not (run.status.is_final and task and task.state in _WAITING):
        # The run is the firing's latest attempt (a waiting task will make another one).
        item.status = run_status(run).value
        item.run_id = metadata["run.id"] = run.run_id
        metadata["run.status"] = run.status.value
        started = run.fetching_at or run.building_at or run.running_at
        if started is not None:
            _start(item, started)
        item.result, item.error = result, shown_error(run.error) or ""
        if run.finished_at is not None:
            _finish(item, run.finished_at)
        return
    if task is None:
        item.status = SeedStatus.COMPLETED.value
        return
    item.status = task_status(task.state).value
    item.error = shown_error(task.last_error) or ""
    if task.state is TaskState.RUNNING:
        _start(item, task.updated_at)
    elif task.state in (TaskState.DONE, TaskState.DEAD):
        _finish(item, task.dead_at or task.updated_at)


def _start(item: ScheduleEventItem, moment: datetime) -> None:
    item.started_at, item.started_at_ms = rfc3339(moment) or "", epoch_ms(moment) or 0


def _finish(item: ScheduleEventItem, moment: datetime) -> None:
    item.finished_at, item.finished_at_ms = rfc3339(moment), epoch_ms(moment)
    item.duration_ms = max(0, (item.finished_at_ms or 0) - item.started_at_ms)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class ScheduleEventList(Schema):
    events: list[ScheduleEventItem]
    """Newest first; the item of an unfinished firing has no ``finishedAt`` /
    ``finishedAtMs``."""

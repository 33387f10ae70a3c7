"""Factories: named producers of the task a schedule enqueues when it fires.

A schedule names a factory (its own name by default). When it fires, the scheduler calls the
factory's ``produce`` with a :class:`Firing` and enqueues the :class:`~store.queue.models.NewTask`
it returns, after setting the task's key to ``schedule:<name>:<fire time>`` (``dedupe``), so a
factory never chooses keys. A factory may also know how to stop a task of its own that is
already running (``cancel_running``), which the ``replace`` overlap policy needs.

Every job definition has the factory of its name: the service registers it, and keeps the
registry in step with the job store (``service.job_schedules.JobFactories``); the scheduler
knows nothing of jobs. ``WORKER_DURABLE_CRON_HANDLERS`` registers
:func:`handler_factory` for each listed queue handler and ``WORKER_DURABLE_CRON_PRESETS``
(read with :func:`parse_presets`) creates schedules at start.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scheduler.errors import InvalidPreset, UnknownFactory
from store.queue.models import DEFAULT_QUEUE, KeyMode, NewTask, Task
from store.schedules.models import SCHEDULE_NAME

__all__ = [
    "Factory",
    "FactoryRegistry",
    "Firing",
    "FiringKind",
    "handler_factory",
    "parse_names",
    "parse_presets",
]


class FiringKind(enum.StrEnum):
    """Why a schedule fired: its clock ticked, a missed tick is caught up, or someone asked."""

    TICK = "tick"
    CATCH_UP = "catch_up"
    MANUAL = "manual"


@dataclass(frozen=True, kw_only=True)
class Firing:
    """What a factory is told when its schedule fires.

    ``fire_time`` is the tick (UTC), or for a manual run the moment it was asked for.
    ``key`` is the queue key the scheduler gives the task (with ``dedupe``) whatever the
    factory returns; a factory may set it itself, which saves a copy of the task.
    """

    schedule: str
    fire_time: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)
    kind: FiringKind = FiringKind.TICK
    key: str | None = None


Produce = Callable[[Firing], Awaitable[NewTask]]
CancelRunning = Callable[[Task], Awaitable[bool]]


@dataclass(frozen=True, kw_only=True)
class Factory:
    """A named producer of tasks.

    ``cancel_running(task)`` (optional) stops a *running* task this factory produced and
    says whether it did (e.g. it asks the job runner to cancel the run); without it, the
    ``replace`` policy skips a tick whose previous task is running.
    """

    name: str
    produce: Produce
    cancel_running: CancelRunning | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not SCHEDULE_NAME.fullmatch(self.name):
            raise ValueError(
                f"factory name {self.name!r} is invalid: use 1-128 letters, digits, '.', '_' or '-'"
            )


class FactoryRegistry:
    """The factories of this process, by name. Registering a name again replaces it."""

    def __init__(self) -> None:
        self._factories: dict[str, Factory] = {}

    def register(self, factory: Factory) -> None:
        self._factories[factory.name] = factory

    def unregister(self, name: str) -> bool:
        """Remove a factory (its schedules then skip their ticks); whether it was there."""
        return self._factories.pop(name, None) is not None

    def get(self, name: str) -> Factory | None:
        return self._factories.get(name)

    def require(self, name: str) -> Factory:
        """The factory called ``name``, or :class:`UnknownFactory`."""
        factory = self._factories.get(name)
        if factory is None:
            raise UnknownFactory(name)
        return factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[Factory]:
        return iter([self._factories[name] for name in self.names()])

    def __len__(self) -> int:
        return len(self._factories)


def handler_factory(
    handler: str, *, name: str | None = None, queue: str = DEFAULT_QUEUE
) -> Factory:
    """A factory enqueueing a plain queue task for ``handler`` with the schedule's payload
    (what ``WORKER_DURABLE_CRON_HANDLERS`` registers)."""
    task_template = NewTask(handler=handler, queue=queue)  # validates handler and queue now

    async def produce(firing: Firing) -> NewTask:
        if firing.key is None:
            return NewTask(
                handler=task_template.handler, queue=task_template.queue, payload=firing.payload
            )
        return NewTask(
            handler=task_template.handler,
            queue=task_template.queue,
            payload=firing.payload,
            key=firing.key,
            key_mode=KeyMode.DEDUPE,
        )

    return Factory(name=name or handler, produce=produce, description=f"queue handler {handler}")


_ENTRY = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]{0,127})\s*=(.*)$", re.DOTALL)


def parse_presets(text: str) -> dict[str, str]:
    """Read ``name=spec,name=spec`` (``WORKER_DURABLE_CRON_PRESETS``) into ``{name: spec}``.

    Cron specs contain commas themselves (``0 9,17 * * *``), so a comma starts a new entry
    only when what follows reads ``name=``; otherwise it belongs to the spec. Specs are not
    parsed here (saving the schedule does). Raises :class:`InvalidPreset`.
    """
    presets: dict[str, str] = {}
    current: str | None = None
    for piece in text.split(","):
        match = _ENTRY.match(piece)
        if match:
            current = match[1]
            if current in presets:
                raise InvalidPreset(f"preset {current!r} is given twice")
            presets[current] = match[2]
        elif current is None:
            if piece.strip():
                raise InvalidPreset(f"preset {piece.strip()!r} is not name=spec")
        else:
            presets[current] += "," + piece
    for name, spec in presets.items():
        presets[name] = spec.strip()
        if not presets[name]:
            raise InvalidPreset(f"preset {name!r} has an empty spec")
    return presets


def parse_names(text: str) -> list[str]:
    """Read a comma-separated list of names (``WORKER_DURABLE_CRON_HANDLERS``), dropping
    blanks and repeats, in order."""
    names: list[str] = []
    for piece in text.split(","):
        name = piece.strip()
        if name and name not in names:
            names.append(name)
    return names

"""Your handlers as schedule factories, and the scheduler a :class:`longshore.Worker` runs.

A factory registered with :meth:`Registry.schedule_factory` (or ``schedulable=True``) is a
:class:`scheduler.factories.Factory`: schedules name it (``longshore schedules create
--factory``, ``POST /admin/v1/schedules``), and each firing enqueues a task for the handler
with the schedule's payload, after calling the ``cron_tick`` hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from longshore.handlers import FactorySpec, Registry
from longshore.hooks import CronTick, Hook, HookFunction, call_hooks
from scheduler.factories import Factory, FactoryRegistry, Firing
from store.queue.models import KeyMode, NewTask

if TYPE_CHECKING:
    from longshore.client import Client

__all__ = ["build_factories"]


def build_factories(registry: Registry, client: Client | None = None) -> FactoryRegistry:
    """A factory registry holding the registry's schedule factories."""
    factories = FactoryRegistry()
    hooks = registry.hooks().get(Hook.CRON_TICK, [])
    for spec in registry.factories:
        factories.register(_factory(spec, hooks, client))
    return factories


def _factory(spec: FactorySpec, hooks: Sequence[HookFunction], client: Client | None) -> Factory:
    template = NewTask(handler=spec.handler, queue=spec.queue, priority=spec.priority)

    async def produce(firing: Firing) -> NewTask:
        if hooks:
            tick = CronTick(
                hook=Hook.CRON_TICK,
                schedule=firing.schedule,
                fire_time=firing.fire_time,
                kind=firing.kind,
                handler=spec.handler,
                payload=firing.payload,
                client=client,
            )
            await call_hooks(hooks, tick)
        return NewTask(
            handler=template.handler,
            queue=template.queue,
            priority=template.priority,
            retry=spec.retry,
            payload=firing.payload,
            key=firing.key,
            key_mode=KeyMode.DEDUPE,
        )

    return Factory(name=spec.name, produce=produce, description=f"handler {spec.handler}")

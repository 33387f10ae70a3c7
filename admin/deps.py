"""``Annotated`` dependencies for routes: the collaborators handed to ``create_app``.

A route module whose collaborator is absent is not mounted (see :mod:`admin.services`), so
the lookups below only fail on a wiring mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from admin.auth import config_of
from admin.config import AdminConfig
from admin.services import AdminServices, NotificationTests
from jobrunner.runner import JobRunner
from scheduler.manager import ScheduleManager
from store.artifacts import ArtifactStore
from store.events import AuditLog, EventStore
from store.jobs.protocol import JobStore, RunStore
from store.notifications.protocol import NotificationStore
from store.queue.protocol import TaskQueue
from store.secrets.protocol import SecretStore


def services_of(request: Request) -> AdminServices:
    services: AdminServices = request.app.state.admin_services
    return services


def _queue(request: Request) -> TaskQueue:
    return services_of(request).queue


def _audit(request: Request) -> AuditLog:
    return services_of(request).audit


def _required(field: str) -> Callable[[Request], Any]:
    """A dependency giving the :class:`AdminServices` collaborator ``field`` (routes that need
    one are only mounted when it is given, so a ``None`` here is a wiring mistake)."""

    def collaborator(request: Request) -> Any:
        found = getattr(services_of(request), field)
        if found is None:
            raise RuntimeError(f"the admin app was built without its {field!r} collaborator")
        return found

    return collaborator


ServicesDep = Annotated[AdminServices, Depends(services_of)]
QueueDep = Annotated[TaskQueue, Depends(_queue)]
AuditDep = Annotated[AuditLog, Depends(_audit)]
EventsDep = Annotated[EventStore, Depends(_required("events"))]
JobsDep = Annotated[JobStore, Depends(_required("jobs"))]
RunsDep = Annotated[RunStore, Depends(_required("runs"))]
RunnerDep = Annotated[JobRunner, Depends(_required("runner"))]
ArtifactsDep = Annotated[ArtifactStore, Depends(_required("artifacts"))]
SchedulesDep = Annotated[ScheduleManager, Depends(_required("schedules"))]
SecretsDep = Annotated[SecretStore, Depends(_required("secrets"))]
NotificationsDep = Annotated[NotificationStore, Depends(_required("notifications"))]
NotificationTestsDep = Annotated[NotificationTests, Depends(_required("notification_tests"))]
ConfigDep = Annotated[AdminConfig, Depends(config_of)]

"""``Annotated`` dependencies for routes: the collaborators handed to ``create_app``.

A route module whose collaborator is absent is not mounted (see :mod:`admin.services`), so
the lookups below only fail on a wiring mistake.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from admin.auth import config_of
from admin.config import AdminConfig
from admin.services import AdminServices
from jobrunner.runner import JobRunner
from scheduler.manager import ScheduleManager
from store.artifacts import ArtifactStore
from store.events import AuditLog, EventStore
from store.jobs.protocol import JobStore, RunStore
from store.queue.protocol import TaskQueue


def services_of(request: Request) -> AdminServices:
    services: AdminServices = request.app.state.admin_services
    return services


def _queue(request: Request) -> TaskQueue:
    return services_of(request).queue


def _audit(request: Request) -> AuditLog:
    return services_of(request).audit


def _missing(name: str) -> RuntimeError:
    return RuntimeError(f"the admin app was built without {name}")


def _events(request: Request) -> EventStore:
    found = services_of(request).events
    if found is None:
        raise _missing("an event store")
    return found


def _jobs(request: Request) -> JobStore:
    found = services_of(request).jobs
    if found is None:
        raise _missing("a job store")
    return found


def _runs(request: Request) -> RunStore:
    found = services_of(request).runs
    if found is None:
        raise _missing("a run store")
    return found


def _runner(request: Request) -> JobRunner:
    found = services_of(request).runner
    if found is None:
        raise _missing("a job runner")
    return found


def _artifacts(request: Request) -> ArtifactStore:
    found = services_of(request).artifacts
    if found is None:
        raise _missing("an artifact store")
    return found


def _schedules(request: Request) -> ScheduleManager:
    found = services_of(request).schedules
    if found is None:
        raise _missing("a schedule manager")
    return found


ServicesDep = Annotated[AdminServices, Depends(services_of)]
QueueDep = Annotated[TaskQueue, Depends(_queue)]
AuditDep = Annotated[AuditLog, Depends(_audit)]
EventsDep = Annotated[EventStore, Depends(_events)]
JobsDep = Annotated[JobStore, Depends(_jobs)]
RunsDep = Annotated[RunStore, Depends(_runs)]
RunnerDep = Annotated[JobRunner, Depends(_runner)]
ArtifactsDep = Annotated[ArtifactStore, Depends(_artifacts)]
SchedulesDep = Annotated[ScheduleManager, Depends(_schedules)]
ConfigDep = Annotated[AdminConfig, Depends(config_of)]

"""The collaborators the admin API works over, handed to :func:`admin.app.create_app`.

``service/`` opens every one of them (and closes them after the server stops); the app owns
none. ``queue`` and ``audit`` are required. The others are optional so that an app can be
built over just a queue (the queue, dead-letter, task and worker routes); the routes of a
collaborator that is absent are not mounted, and the OpenAPI document lists only what is.
``longshore serve`` always passes all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from jobrunner.run_retention import RetentionCounters
from jobrunner.runner import JobRunner
from scheduler.manager import ScheduleManager
from store.artifacts import ArtifactStore
from store.events import AuditLog, EventStore
from store.jobs.protocol import JobStore, RunStore
from store.notifications.models import NotificationRule
from store.notifications.protocol import NotificationStore
from store.queue.protocol import TaskQueue
from store.secrets.protocol import SecretStore


class NotificationTests(Protocol):
    """Sends a rule's test notification (``service``'s notifier, which enqueues the real
    ones the same way)."""

    async def send_test(self, rule: NotificationRule) -> int:
        """Enqueue one ``notify.deliver`` task of a ``test`` message; return its id."""
        ...


@dataclass(frozen=True, kw_only=True)
class AdminServices:
    """What the admin routes read and change."""

    queue: TaskQueue
    audit: AuditLog
    events: EventStore | None = None
    """The event store: job/run and schedule events, the live stream, audit reads."""
    jobs: JobStore | None = None
    runs: RunStore | None = None
    runner: JobRunner | None = None
    """Submits runs (``POST /jobs/{name}/run``)."""
    artifacts: ArtifactStore | None = None
    """Run artifacts and source artifacts, by sha256."""
    schedules: ScheduleManager | None = None
    secrets: SecretStore | None = None
    """Secrets (``/secrets``; saving a job checks that the secrets it names exist)."""
    retention: RetentionCounters | None = None
    """What run retention and the removal of crash leftovers did (for the metrics)."""
    notifications: NotificationStore | None = None
    """Notification rules (``/notifications/rules``)."""
    notification_tests: NotificationTests | None = None
    """Test notifications (``POST /notifications/rules/{name}/test``)."""

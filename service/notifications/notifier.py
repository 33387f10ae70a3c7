"""Turning what happened into ``notify.deliver`` tasks on Longshore's own durable queue.

:class:`Notifier` finds the rules that hear of a finished run (:mod:`.matching`) or of a
missed schedule firing, and enqueues one ``notify.deliver`` task per rule and event, keyed
``notify:<rule>:<event>:<run id or firing>`` so the same notification is never enqueued
twice (:meth:`Notifier.send_test` enqueues an operator's ``test`` of a rule the same way,
under a key of its own each time). From then on the queue owns it: retried with backoff,
dead-lettered when it keeps failing (:mod:`.delivery`). The worker's hook that tells it of runs is
:class:`~service.notifications.observer.NotificationObserver`.

A notifier that cannot read the rules or enqueue (the store is down) logs it: the run's
own outcome is never changed by its notifications.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from admin.run_errors import shown_error
from scheduler.missed import MissedFiring
from service.notifications.matching import events_for, rules_for, run_facts
from store.jobs.models import Run
from store.jobs.protocol import RunStore
from store.notifications.models import NotificationRule, RuleEvent, RuleScope
from store.notifications.protocol import NotificationStore
from store.queue.models import KeyMode, NewTask
from store.queue.protocol import TaskQueue
from store.queue.retry import RetryPolicy

__all__ = ["HANDLER", "TEST", "Notifier"]

logger = logging.getLogger(__name__)

HANDLER = "notify.deliver"
TEST = "test"
"""The event (and subject kind) of a notification an operator sends to try a rule."""
HISTORY = 200
"""How many of a job's newest runs are read to count failures in a row (the rule's
``failuresInARow`` is at most 100)."""


class Notifier:
    """Enqueues the notifications of runs and missed firings; see the module docstring."""

    def __init__(
        self,
        *,
        rules: NotificationStore,
        runs: RunStore,
        queue: TaskQueue,
        queue_name: str,
        retry: RetryPolicy,
    ) -> None:
        self._rules = rules
        self._runs = runs
        self._queue = queue
        self._queue_name = queue_name
        self._retry = retry

    async def run_finished(self, run: Run, *, dead: bool) -> int:
        """Enqueue what the final ``run`` triggers (``dead``: its task is out of attempts);
        return how many notifications were enqueued."""
        rules = rules_for(await self._rules.list_all(), job=run.job, schedule=run.schedule_name)
        if not rules:
            return 0
        history = (await self._runs.list_runs(job=run.job, limit=HISTORY, offset=0)).items
        sent = 0
        for rule in rules:
            earlier = history
            if rule.scope is RuleScope.SCHEDULE:
                earlier = [item for item in history if item.schedule_name == rule.target]
            facts = run_facts(run, earlier, dead=dead)
            for event in events_for(rule, facts):
                subject = _run_subject(run, failures_in_a_row=facts.failures_in_a_row)
                await self._enqueue(rule, event, subject, run.run_id)
                sent += 1
        return sent

    async def run_slow(self, run: Run, rule: NotificationRule) -> None:
        """Enqueue ``rule``'s ``slow`` notification of ``run``, still running (the same one
        its end would enqueue: the key makes it one)."""
        subject = _run_subject(run, failures_in_a_row=0)
        await self._enqueue(rule, RuleEvent.SLOW, subject, run.run_id)

    async def slow_rules(self, *, job: str, schedule: str | None) -> list[NotificationRule]:
        """The rules that want to hear of ``job``'s slow runs."""
        rules = rules_for(await self._rules.list_all(), job=job, schedule=schedule)
        return [rule for rule in rules if RuleEvent.SLOW in rule.events]

    async def firings_missed(self, missed: list[MissedFiring]) -> int:
        """The scheduler's ``on_missed`` handler: enqueue the ``missed`` notifications of
        firings not enqueued within their grace; return how many."""
        rules = await self._rules.list_all()
        sent = 0
        for firing in missed:
            schedule = firing.schedule
            subject = {
                "kind": "firing",
                "schedule": schedule.name,
                "job": schedule.factory,
                "status": "missed",
                "scheduledAt": firing.scheduled_at.isoformat(),
                "graceSeconds": schedule.misfire_grace_seconds,
                "reason": firing.reason,
                "omitted": firing.omitted,
                "error": "",
            }
            for rule in rules_for(rules, job=None, schedule=schedule.name):
                if RuleEvent.MISSED in rule.events:
                    about = firing.scheduled_at.isoformat()
                    await self._enqueue(rule, RuleEvent.MISSED, subject, about)
                    sent += 1
        return sent

    async def send_test(self, rule: NotificationRule) -> int:
        """Enqueue a ``test`` notification of ``rule`` (enabled or not), delivered like any
        other; return its task's id. Each call is a new notification."""
        subject = {"kind": TEST, "rule": rule.name, "status": "test notification", "error": ""}
        return await self._enqueue(rule, TEST, subject, uuid.uuid4().hex)

    async def _enqueue(
        self,
        rule: NotificationRule,
        event: str,
        subject: Mapping[str, Any],
        about: str,
    ) -> int:
        name = str(event)  # a RuleEvent is a str enum: its value
        message = {
            "rule": rule.name,
            "event": name,
            "subject": dict(subject),
            "createdAt": datetime.now(UTC).isoformat(),
        }
        key = f"notify:{rule.name}:{name}:{subject.get('schedule') or ''}:{about}"
        task = NewTask(
            handler=HANDLER,
            payload={"rule": rule.name, "event": name, "message": message},
            queue=self._queue_name,
            retry=self._retry,
            key=key[:500],
            key_mode=KeyMode.DEDUPE,
        )
        result = await self._queue.enqueue(task)
        logger.info(
            "notification enqueued",
            extra={"rule": rule.name, "event": name, "task_id": result.task.id},
        )
        return result.task.id


def _run_subject(run: Run, *, failures_in_a_row: int) -> dict[str, Any]:
    ran = None
    if run.running_at is not None and run.finished_at is not None:
        ran = round((run.finished_at - run.running_at).total_seconds(), 3)
    return {
        "kind": "run",
        "job": run.job,
        "schedule": run.schedule_name or "",
        "runId": run.run_id,
        "taskId": run.task_id,
        "attempt": run.attempt,
        "status": run.status.value,
        "exitCode": run.exit_code,
        "error": shown_error(run.error) or "",
        "trigger": run.trigger.value,
        "startedAt": None if run.running_at is None else run.running_at.isoformat(),
        "finishedAt": None if run.finished_at is None else run.finished_at.isoformat(),
        "ranSeconds": ran,
        "failuresInARow": failures_in_a_row,
    }

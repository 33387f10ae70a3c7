"""The worker's hook: tells the :class:`~service.notifications.notifier.Notifier` of each
``job.run`` attempt's run (other handlers are not looked at).

- Once the attempt has a verdict, its run (final by then) is told to the notifier, with
  whether the task is out of attempts (``retries_exhausted``).
- While it runs, a watcher per attempt that some rule wants ``slow`` warnings of checks the
  run: once its container has run longer than the rule's ``warnAfterSeconds``, the ``slow``
  notification is enqueued at once — a warning, the run goes on. (The run's end would
  enqueue the same one; its key makes it one.) The watcher ends with the attempt.

A hook that fails is logged by the worker and never changes the task's outcome.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from jobrunner.job_run_task import HANDLER as JOB_RUN_HANDLER
from jobrunner.job_run_task import JobRunPayload
from service.notifications.notifier import Notifier
from service.observer import TaskOutcome, Verdict
from store.background import TaskOwner
from store.jobs.models import Run, RunStatus
from store.jobs.protocol import RunStore
from store.notifications.models import NotificationRule
from store.queue.handlers import TaskContext
from store.queue.models import Task

__all__ = ["NotificationObserver"]

logger = logging.getLogger(__name__)

MAX_POLL_SECONDS = 30.0


class NotificationObserver:
    """A :class:`~service.observer.TaskObserver`; see the module docstring. :meth:`close`
    ends the watchers still running (the worker stopped)."""

    def __init__(self, notifier: Notifier, runs: RunStore) -> None:
        self._notifier = notifier
        self._runs = runs
        self._watchers = TaskOwner("notify-slow")
        self._watching: dict[int, asyncio.Task[None]] = {}

    async def before_run(self, context: TaskContext) -> None:
        task = context.task
        if task.handler != JOB_RUN_HANDLER:
            return
        try:
            payload = JobRunPayload.from_payload(task.payload)
        except ValueError:
            return
        rules = await self._notifier.slow_rules(job=payload.job, schedule=payload.schedule_name)
        if rules:
            self._watching[task.id] = self._watchers.spawn(
                self._watch(task, rules), name=f"notify-slow-{task.id}"
            )

    async def after_run(self, outcome: TaskOutcome) -> None:
        task = outcome.context.task
        if task.handler != JOB_RUN_HANDLER:
            return
        watcher = self._watching.pop(task.id, None)
        if watcher is not None:
            watcher.cancel()
        run = await self._run_of(task)
        if run is None or not run.status.is_final or run.status is RunStatus.CANCELLED:
            return
        await self._notifier.run_finished(run, dead=outcome.verdict is Verdict.DEAD)

    async def close(self) -> None:
        self._watching.clear()
        await self._watchers.close()

    async def _run_of(self, task: Task) -> Run | None:
        attempt = max(task.attempts, 1)
        found = [run for run in await self._runs.find_by_task(task.id) if run.attempt == attempt]
        return found[-1] if found else None

    async def _watch(self, task: Task, rules: list[NotificationRule]) -> None:
        """Tell each rule once the attempt's container has run past its threshold."""
        waiting = sorted(rules, key=lambda rule: rule.warn_after_seconds)
        poll = min(MAX_POLL_SECONDS, max(0.5, waiting[0].warn_after_seconds / 4))
        while waiting:
            await asyncio.sleep(poll)
            try:
                run = await self._run_of(task)
            except Exception as exc:  # the store hiccuped: look again later
                logger.warning("could not read a watched run", extra={"error": str(exc)})
                continue
            if run is None or run.running_at is None:
                continue
            if run.status.is_final:
                return
            ran = (datetime.now(UTC) - run.running_at).total_seconds()
            while waiting and ran > waiting[0].warn_after_seconds:
                rule = waiting.pop(0)
                try:
                    await self._notifier.run_slow(run, rule)
                except Exception as exc:
                    logger.warning(
                        "could not enqueue a slow-run notification",
                        extra={"rule": rule.name, "error": str(exc)},
                    )

"""Crash recovery: ending the runs whose worker is gone, and removing their containers.

A run is *owned* while it is not final and its task is running under the lease of a
registered (live) worker. A run that is ``fetching``, ``building`` or ``running`` but not
owned lost its worker (killed, or swept as stale): it is marked failed with
:data:`INTERRUPTED` (the task, if retried, records a new run). A ``queued`` run is left
alone: its task is still waiting to be claimed. Containers are found by their labels: the
runner's scope (``longshore.scope``) and the run (``longshore.run``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from jobrunner.engine import LABEL_RUN, LABEL_SCOPE, ContainerEngine
from jobrunner.errors import describe
from jobrunner.run_events import RunRecorder
from store.jobs.models import Run, RunStatus
from store.jobs.protocol import RunStore
from store.queue.models import Task, TaskState
from store.queue.protocol import TaskQueue

logger = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the worker that ran it is gone"
"""The error of a run whose worker vanished."""


class CrashRecovery:
    """Finds the runs no live worker owns (see the module docstring), ends them and
    removes their containers, among those labelled with ``scope``."""

    def __init__(
        self,
        *,
        queue: TaskQueue,
        runs: RunStore,
        engine: ContainerEngine,
        recorder: RunRecorder,
        scope: str,
    ) -> None:
        self._queue = queue
        self._runs = runs
        self._engine = engine
        self._recorder = recorder
        self._scope = scope

    async def cleanup_orphans(self) -> list[str]:
        """Recover from a crashed worker; return the ids of the containers removed.

        Runs no live worker owns are marked failed, then every container of the scope
        labelled for a run that is not owned is removed. The runs are marked before the
        engine is asked, so an engine that cannot be reached (``EngineUnavailable``,
        raised after) does not keep them open."""
        owned, interrupted = await self._interrupted_runs()
        await self._mark_interrupted(interrupted)
        removed = await self._engine.cleanup_orphans(owned, only_labels={LABEL_SCOPE: self._scope})
        if removed:
            logger.info("removed orphaned job containers", extra={"containers": removed})
        return removed

    async def sweep_interrupted(self) -> list[str]:
        """The periodic part of :meth:`cleanup_orphans`, safe while runs are under way: mark
        the runs no live worker owns failed and remove *their* containers only; return the
        ids of the containers removed.

        It ends the runs of a worker that died after the last start of this service, once
        its lease expired or it was swept as stale, also when its task has no attempt left
        (dead-lettered, so no retry would end them). Containers of other runs are never
        touched: one started between the look at the runs and the look at the engine would
        otherwise be taken for an orphan."""
        _, interrupted = await self._interrupted_runs()
        await self._mark_interrupted(interrupted)
        removed: list[str] = []
        for run in interrupted:
            labels = {LABEL_SCOPE: self._scope, LABEL_RUN: run.run_id}
            removed.extend(await self._engine.cleanup_orphans(set(), only_labels=labels))
        removed.extend(await self.remove_ended())
        if removed:
            logger.info("removed orphaned job containers", extra={"containers": removed})
        return removed

    async def remove_ended(self) -> list[str]:
        """Remove every container of the scope whose run has ended (or was deleted); return
        the ids removed. These are what an engine restart leaves: containers that were
        running when the engine went away come back ``Exited`` (or, with live-restore,
        still running) after their runs were ended without them, and would stay until the
        next start of the service.

        Each run is looked at *after* the engine listed its containers, and only a final run
        (a final status never changes) or one no longer recorded (retention deletes final
        runs only; a run is recorded before its container is made) lets its containers go,
        so a run starting meanwhile is never touched."""
        removed: list[str] = []
        for run_id in sorted(await self._engine.run_containers({LABEL_SCOPE: self._scope})):
            run = await self._runs.get(run_id)
            if run is not None and not run.status.is_final:
                continue
            labels = {LABEL_SCOPE: self._scope, LABEL_RUN: run_id}
            removed.extend(await self._engine.cleanup_orphans(set(), only_labels=labels))
        return removed

    async def end_earlier_attempts(self, run: Run) -> None:
        """End the runs of this task's earlier attempts that are not final, and remove their
        containers: the task is leased to this attempt now, so whoever ran them is gone (a
        worker killed mid-run, whose lease expired). Without this they would stay ``running``
        until a restart's :meth:`cleanup_orphans` found them, and with a quick restart (the
        dead worker still registered) never. An engine that cannot be reached is logged: the
        containers go at the next sweep, and this attempt fails on its own if it needs one."""
        if run.task_id is None:
            return
        earlier = [
            other
            for other in await self._runs.find_by_task(run.task_id)
            if other.attempt < run.attempt and not other.status.is_final
        ]
        for other in earlier:
            await self._recorder.finish(other.run_id, RunStatus.FAILED, error=INTERRUPTED)
            logger.warning(
                "marked the run of an interrupted attempt failed",
                extra={"run_id": other.run_id, "job": other.job, "status": other.status.value},
            )
        for other in earlier:
            labels = {LABEL_SCOPE: self._scope, LABEL_RUN: other.run_id}
            try:
                removed = await self._engine.cleanup_orphans(set(), only_labels=labels)
            except Exception as exc:
                logger.warning(
                    "could not remove the containers of an interrupted attempt",
                    extra={"run_id": other.run_id, "error": describe(exc)},
                )
                continue
            if removed:
                logger.info(
                    "removed the containers of an interrupted attempt",
                    extra={"run_id": other.run_id, "containers": removed},
                )

    async def _interrupted_runs(self) -> tuple[set[str], list[Run]]:
        """The ids of the runs live workers own, and the unfinished runs no one owns (not
        ``queued``)."""
        live = {record.info.worker_id for record in await self._queue.list_workers()}
        now = datetime.now(UTC)
        owned: set[str] = set()
        interrupted: list[Run] = []
        for run in await self._runs.active_runs():
            task = None if run.task_id is None else await self._queue.get_task(run.task_id)
            # A lease still in force means its owner renewed it lately, listed or not (a
            # live worker swept during a store outage registers again with its next
            # heartbeat): missing from the registry alone never ends a run.
            if task is not None and _held(task, live, now):
                owned.add(run.run_id)
            elif run.status is not RunStatus.QUEUED:
                interrupted.append(run)
        return owned, interrupted

    async def _mark_interrupted(self, interrupted: list[Run]) -> None:
        for run in interrupted:
            await self._recorder.finish(run.run_id, RunStatus.FAILED, error=INTERRUPTED)
            logger.warning(
                "marked an interrupted run failed",
                extra={"run_id": run.run_id, "job": run.job, "status": run.status.value},
            )


def _held(task: Task, live: set[str], now: datetime) -> bool:
    """Whether ``task`` is running under a worker that is alive: listed, or renewing."""
    if task.state is not TaskState.RUNNING:
        return False
    if task.lease_owner in live:
        return True
    return task.lease_expires_at is not None and task.lease_expires_at > now

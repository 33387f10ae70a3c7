"""Starting a run's container: never beside an earlier one, never on an image that is gone.

Before the container of a run starts, every container of the same run (one whose step is
tried again after the engine came back) and of the earlier attempts of its task (found by
their labels: the runner's scope and ``longshore.run``) is stopped and removed: after an
engine restart with live-restore, an interrupted attempt's container may still be running,
and must never run to completion beside its retry.

A start that fails while the run's image is no longer on the engine (image retention
removed it in the moment between the run finding it and starting it) is not an engine
fault to wait out: the attempt fails (:class:`~jobrunner.errors.JobRunFailed`, retried
while the job has retries), and the next attempt builds the image again.
"""

from __future__ import annotations

import asyncio
import logging

from jobrunner.engine import (
    LABEL_RUN,
    LABEL_SCOPE,
    LABEL_SOURCE_DIGEST,
    ContainerEngine,
    OutputCallback,
    RunResult,
    RunSpec,
)
from jobrunner.errors import EngineUnavailable, JobRunFailed
from store.jobs.models import Run
from store.jobs.protocol import RunStore

logger = logging.getLogger(__name__)


async def start_container(
    engine: ContainerEngine,
    runs: RunStore,
    scope: str,
    run: Run,
    spec: RunSpec,
    feed: OutputCallback | None,
    cancel: asyncio.Event,
) -> RunResult:
    """Run ``spec``'s container for ``run`` to its end (see the module docstring)."""
    run_ids = [run.run_id]
    if run.task_id is not None and run.attempt > 1:
        earlier = await runs.find_by_task(run.task_id)
        run_ids += [other.run_id for other in earlier if other.attempt < run.attempt]
    for run_id in run_ids:
        labels = {LABEL_SCOPE: scope, LABEL_RUN: run_id}
        removed = await engine.cleanup_orphans(set(), only_labels=labels)
        if removed:
            logger.warning(
                "removed an earlier container of the run before starting it",
                extra={"run_id": run.run_id, "of_run": run_id, "containers": removed},
            )
    try:
        return await engine.run(spec, feed, cancel)
    except EngineUnavailable:
        digest = spec.labels.get(LABEL_SOURCE_DIGEST)
        # Asking may fail too (the engine is away): then the first fault stands.
        if digest is None or await _image_there(engine, digest, scope):
            raise
        raise JobRunFailed(
            f"run {run.run_id} of job {run.job!r}: its image was removed before its "
            "container started (it is built again by the next attempt)"
        ) from None


async def _image_there(engine: ContainerEngine, digest: str, scope: str) -> bool:
    try:
        return await engine.cached_image(digest, scope=scope) is not None
    except EngineUnavailable:
        return True

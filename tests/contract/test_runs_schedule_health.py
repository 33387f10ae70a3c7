"""How the runs each schedule started are going: its last success and the failures since,
from which a schedule is ``failing`` — on every backend."""

from __future__ import annotations

from typing import Any

from store.jobs.models import NewRun, RunStatus, RunTrigger


async def run_of(run_store: Any, schedule: str | None, status: RunStatus) -> Any:
    trigger = RunTrigger.SCHEDULE if schedule else RunTrigger.API
    run = await run_store.create(NewRun(job="report", trigger=trigger, schedule_name=schedule))
    return await run_store.transition(run.run_id, status)


async def test_failures_since_the_last_success_make_a_schedule_failing(run_store: Any) -> None:
    assert await run_store.schedule_health() == {}
    await run_of(run_store, "hourly", RunStatus.FAILED)
    ok = await run_of(run_store, "hourly", RunStatus.SUCCEEDED)
    await run_of(run_store, "hourly", RunStatus.FAILED)
    await run_of(run_store, "hourly", RunStatus.CANCELLED)
    await run_of(run_store, "nightly", RunStatus.FAILED)
    await run_of(run_store, "nightly", RunStatus.TIMED_OUT)
    await run_of(run_store, None, RunStatus.FAILED)  # not a schedule's run

    health = await run_store.schedule_health()
    assert set(health) == {"hourly", "nightly"}
    assert health["hourly"].last_success_at == ok.finished_at
    assert health["hourly"].failures_since_success == 1
    assert not health["hourly"].failing
    assert health["nightly"].last_success_at is None
    assert health["nightly"].failures_since_success == 2
    assert health["nightly"].failing

    await run_of(run_store, "hourly", RunStatus.FAILED)
    assert (await run_store.schedule_health())["hourly"].failing
    await run_of(run_store, "hourly", RunStatus.SUCCEEDED)
    assert not (await run_store.schedule_health())["hourly"].failing

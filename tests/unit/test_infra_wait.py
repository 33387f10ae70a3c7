"""The wait budget of infrastructure faults (pure logic: the steps are plain coroutines)."""

from __future__ import annotations

import asyncio
import errno

import pytest

from jobrunner.errors import (
    EngineUnavailable,
    FetchFailed,
    JobRunFailed,
    SourceRejected,
    WaitCancelled,
)
from jobrunner.infra_wait import DISK, ENGINE, NETWORK, InfraWaits, PatientAttempt, infra_fault


def test_what_an_error_waits_for():
    assert infra_fault(EngineUnavailable("x")) == ENGINE
    assert infra_fault(FetchFailed("x")) == NETWORK
    assert infra_fault(OSError(errno.ENOSPC, "No space left on device")) == DISK
    assert infra_fault(OSError(errno.EACCES, "denied")) is None
    assert infra_fault(JobRunFailed("exit 1")) is None
    assert infra_fault(SourceRejected("no such tag")) is None


class Steps:
    def __init__(self, faults: list[BaseException]) -> None:
        self.faults = faults
        self.calls = 0
        self.notices: list[tuple[str, float]] = []

    async def step(self) -> str:
        self.calls += 1
        if self.faults:
            raise self.faults.pop(0)
        return "done"

    async def notice(self, kind: str, fault: BaseException, retry_in: float, waited: float) -> None:
        self.notices.append((kind, retry_in))


async def test_a_fault_is_waited_out_and_the_step_tried_again():
    waits = InfraWaits(budget=60.0, max_delay=0.05)
    steps = Steps([EngineUnavailable("down"), EngineUnavailable("down"), FetchFailed("net")])
    patient = PatientAttempt(waits, asyncio.Event(), steps.notice)
    assert await patient.call(steps.step) == "done"
    assert steps.calls == 4
    assert [kind for kind, _ in steps.notices] == [ENGINE, ENGINE, NETWORK]
    assert waits.waits == {ENGINE: 2, NETWORK: 1, DISK: 0}
    assert waits.waiting == {ENGINE: 0, NETWORK: 0, DISK: 0}
    assert patient.waited > 0


async def test_the_jobs_own_failure_is_never_waited_on():
    waits = InfraWaits(budget=60.0, max_delay=0.05)
    steps = Steps([JobRunFailed("exited with code 1")])
    with pytest.raises(JobRunFailed):
        await PatientAttempt(waits, asyncio.Event(), steps.notice).call(steps.step)
    assert steps.calls == 1
    assert steps.notices == []


async def test_past_the_budget_the_fault_fails_the_attempt():
    waits = InfraWaits(budget=0.2, max_delay=0.05)
    steps = Steps([EngineUnavailable("down")] * 1000)
    with pytest.raises(EngineUnavailable):
        await PatientAttempt(waits, asyncio.Event(), steps.notice).call(steps.step)
    assert waits.exhausted == 1
    assert 2 <= steps.calls < 1000


async def test_no_budget_means_no_wait():
    waits = InfraWaits(budget=0.0)
    steps = Steps([EngineUnavailable("down")])
    with pytest.raises(EngineUnavailable):
        await PatientAttempt(waits, asyncio.Event(), steps.notice).call(steps.step)
    assert steps.calls == 1


async def test_a_cancel_ends_the_wait_at_once():
    waits = InfraWaits(budget=600.0, max_delay=600.0)
    cancel = asyncio.Event()
    steps = Steps([EngineUnavailable("down")] * 10)
    patient = PatientAttempt(waits, cancel, steps.notice)
    asyncio.get_running_loop().call_later(0.1, cancel.set)
    with pytest.raises(WaitCancelled, match="cancelled while waiting for the engine"):
        await asyncio.wait_for(patient.call(steps.step), 5)
    assert waits.waiting[ENGINE] == 0


async def test_before_retry_runs_before_each_new_try():
    waits = InfraWaits(budget=60.0, max_delay=0.01)
    steps = Steps([FetchFailed("net"), FetchFailed("net")])
    cleared: list[int] = []

    async def clear() -> None:
        cleared.append(steps.calls)

    await PatientAttempt(waits, asyncio.Event(), steps.notice).call(steps.step, before_retry=clear)
    assert cleared == [1, 2]

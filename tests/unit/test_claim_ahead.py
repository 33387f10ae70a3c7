"""The claim-ahead pace: how many tasks a worker may claim beyond its free slots."""

from __future__ import annotations

from datetime import UTC, datetime

from service.claim_ahead import HOLD_AHEAD, HORIZON, ClaimAhead
from store.queue.models import Task, TaskState
from store.queue.retry import RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def task(task_id: int) -> Task:
    now = datetime.now(UTC)
    return Task(
        id=task_id,
        queue="default",
        handler="builtin.noop",
        payload={},
        priority=0,
        run_at=now,
        state=TaskState.RUNNING,
        attempts=1,
        retry=RetryPolicy(),
        last_error=None,
        key=None,
        lease_owner="w",
        lease_expires_at=now,
        created_at=now,
        updated_at=now,
    )


def finish(ahead: ClaimAhead, count: int) -> None:
    for _ in range(count):
        ahead.finished()


def test_a_worker_that_finished_nothing_claims_only_for_its_free_slots():
    ahead = ClaimAhead(batch=32, clock=Clock())
    assert ahead.want(4) == 4
    assert ahead.want(0) == 0


def test_tasks_finished_in_the_last_window_may_be_claimed_ahead_up_to_the_batch():
    clock = Clock()
    ahead = ClaimAhead(batch=32, clock=clock)
    finish(ahead, 10)
    assert ahead.want(2) == 12  # within the window: what finished so far
    clock.now += HORIZON
    assert ahead.want(0) == 10  # the last whole window
    finish(ahead, 100)
    assert ahead.want(8) == 32  # capped by the claim batch


def test_a_window_without_finishes_ends_the_allowance():
    clock = Clock()
    ahead = ClaimAhead(batch=32, clock=clock)
    finish(ahead, 20)
    clock.now += 3 * HORIZON
    assert ahead.want(1) == 1
    clock.now += HORIZON
    assert ahead.want(1) == 1


def test_no_claim_while_tasks_claimed_ahead_wait_and_they_start_oldest_first():
    clock = Clock()
    ahead = ClaimAhead(batch=32, clock=clock)
    finish(ahead, 50)
    ahead.add([task(1), task(2), task(3)])
    assert len(ahead) == 3
    assert ahead.want(8) == 0
    assert [t.id for t in ahead.take(2)] == [1, 2]
    assert ahead.ids() == [3]
    assert [t.id for t in ahead.take(5)] == [3]
    assert ahead.take(1) == []
    assert ahead.want(1) > 1


def test_tasks_held_longer_than_the_hold_are_due_back():
    clock = Clock()
    ahead = ClaimAhead(batch=32, clock=clock)
    assert not ahead.held_too_long()  # nothing held
    ahead.add([task(1)])
    clock.now += HOLD_AHEAD / 2
    assert not ahead.held_too_long()
    clock.now += HOLD_AHEAD
    assert ahead.held_too_long()
    ahead.clear()
    assert not ahead.held_too_long()
    assert len(ahead) == 0

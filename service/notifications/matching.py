"""Which events a finished run is, and which rules hear of it (pure logic, no I/O).

- A run **failed** when it ended ``failed`` or ``timed_out``; ``cancelled`` runs are neither
  failures nor successes and are skipped when counting.
- **Failures in a row**: the run failed and so did the runs before it, back to the last
  success (each attempt is a run). A ``failed_in_a_row`` rule is told when the count
  reaches its ``failuresInARow`` exactly: once per streak, not on every later failure.
- **Recovered**: the run succeeded and the final run before it failed.
- **Retries exhausted**: the run failed and its task is out of attempts (dead-lettered).
- **Slow**: the run's container ran longer than the rule's ``warnAfterSeconds`` (the
  worker's watcher tells it while the run goes on; the run's end tells it only if the
  watcher could not).

Rule selection: the rules of the run's schedule and of its job apply; the global rules are
the default, for runs of jobs and schedules that have no enabled rule of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from store.jobs.models import Run, RunStatus
from store.notifications.models import NotificationRule, RuleEvent, RuleScope

FAILED = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT})


@dataclass(frozen=True, kw_only=True)
class RunFacts:
    """What a finished run was, for matching rules."""

    status: RunStatus
    failures_in_a_row: int
    recovered: bool
    dead: bool
    ran_seconds: float | None

    @property
    def failed(self) -> bool:
        return self.status in FAILED


def run_facts(current: Run, earlier: Iterable[Run], *, dead: bool) -> RunFacts:
    """The facts of ``current`` (final) given ``earlier`` runs of the same job or schedule,
    newest first (``current`` itself and unfinished or cancelled runs are skipped)."""
    before = [
        run
        for run in earlier
        if run.run_id != current.run_id
        and run.status.is_final
        and run.status is not RunStatus.CANCELLED
    ]
    in_a_row = 0
    if current.status in FAILED:
        in_a_row = 1
        for run in before:
            if run.status not in FAILED:
                break
            in_a_row += 1
    recovered = (
        current.status is RunStatus.SUCCEEDED and bool(before) and before[0].status in FAILED
    )
    ran = None
    if current.running_at is not None and current.finished_at is not None:
        ran = (current.finished_at - current.running_at).total_seconds()
    return RunFacts(
        status=current.status,
        failures_in_a_row=in_a_row,
        recovered=recovered,
        dead=dead and current.status in FAILED,
        ran_seconds=ran,
    )


def events_for(rule: NotificationRule, facts: RunFacts) -> list[RuleEvent]:
    """The events of ``rule`` that ``facts`` trigger, in the rule's order."""
    found: list[RuleEvent] = []
    for event in rule.events:
        if event is RuleEvent.FAILED:
            hit = facts.failed
        elif event is RuleEvent.FAILED_IN_A_ROW:
            hit = facts.failures_in_a_row == rule.failures_in_a_row
        elif event is RuleEvent.RECOVERED:
            hit = facts.recovered
        elif event is RuleEvent.RETRIES_EXHAUSTED:
            hit = facts.dead
        elif event is RuleEvent.TIMED_OUT:
            hit = facts.status is RunStatus.TIMED_OUT
        elif event is RuleEvent.SLOW:
            hit = (
                rule.warn_after_seconds > 0
                and facts.ran_seconds is not None
                and facts.ran_seconds > rule.warn_after_seconds
            )
        else:
            hit = False  # ``missed`` is told by the scheduler, never of a run
        if hit:
            found.append(event)
    return found


def rules_for(
    rules: Sequence[NotificationRule], *, job: str | None, schedule: str | None
) -> list[NotificationRule]:
    """The enabled rules that hear of ``job``/``schedule``: their own, else the global ones."""
    enabled = [rule for rule in rules if rule.enabled]
    own = [
        rule
        for rule in enabled
        if rule.scope is not RuleScope.GLOBAL and rule.applies_to(job=job, schedule=schedule)
    ]
    return own or [rule for rule in enabled if rule.scope is RuleScope.GLOBAL]

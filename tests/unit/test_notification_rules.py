"""Which events a finished run is and which rules hear of it; what a message says and how it
is signed (pure logic)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.notifications import messages
from service.notifications.matching import events_for, rules_for, run_facts
from store.jobs.models import Run, RunStatus, RunTrigger
from store.notifications.errors import InvalidRule
from store.notifications.models import (
    Channel,
    NotificationRule,
    RuleEvent,
    RuleScope,
    check_rule,
    plain_secret,
    rule_from_row,
    rule_to_row,
    secret_context,
)

T0 = datetime(2026, 12, 1, tzinfo=UTC)
OK, FAIL, TIMEOUT, CANCEL = (
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.TIMED_OUT,
    RunStatus.CANCELLED,
)


def run(n: int, status: RunStatus, *, ran: float = 1.0, schedule: str | None = None) -> Run:
    start = T0 + timedelta(minutes=n)
    return Run(
        run_id=f"r{n}",
        task_id=n,
        job="nightly",
        attempt=1,
        trigger=RunTrigger.API,
        actor=None,
        schedule_name=schedule,
        status=status,
        queued_at=start,
        running_at=start,
        finished_at=start + timedelta(seconds=ran),
    )


def history(*statuses: RunStatus) -> list[Run]:
    """Runs oldest to newest; returned newest first, as the run store lists them."""
    return [run(n, status) for n, status in enumerate(statuses)][::-1]


def rule(*events: RuleEvent, **changes: Any) -> NotificationRule:
    base = NotificationRule(
        name="r",
        scope=RuleScope.JOB,
        target="nightly",
        events=events,
        channel=Channel.WEBHOOK,
        url="https://hooks.example.test/",
        secret="k",
    )
    return dataclasses.replace(base, **changes)


def told(runs: list[Run], the_rule: NotificationRule, *, dead: bool = False) -> list[str]:
    return [event.value for event in events_for(the_rule, run_facts(runs[0], runs, dead=dead))]


def test_a_failure_is_told_and_a_success_is_not() -> None:
    failed = rule(RuleEvent.FAILED)
    assert told(history(OK, FAIL), failed) == ["failed"]
    assert told(history(FAIL, OK), failed) == []
    assert told(history(TIMEOUT), failed) == ["failed"]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ((FAIL, FAIL), []),
        ((OK, FAIL, FAIL, FAIL), ["failed_in_a_row"]),
        ((FAIL, FAIL, FAIL, FAIL), []),  # the 4th of a streak is not told again
        ((FAIL, OK, FAIL, FAIL), []),
        ((FAIL, FAIL, CANCEL, FAIL), ["failed_in_a_row"]),  # a cancelled run is skipped
        ((FAIL, TIMEOUT, FAIL), ["failed_in_a_row"]),
    ],
)
def test_failures_in_a_row_are_told_when_the_count_is_reached(
    statuses: tuple[RunStatus, ...], expected: list[str]
) -> None:
    assert told(history(*statuses), rule(RuleEvent.FAILED_IN_A_ROW, failures_in_a_row=3)) == (
        expected
    )


def test_recovery_is_the_first_success_after_failures() -> None:
    recovered = rule(RuleEvent.RECOVERED)
    assert told(history(FAIL, FAIL, OK), recovered) == ["recovered"]
    assert told(history(FAIL, CANCEL, OK), recovered) == ["recovered"]
    assert told(history(FAIL, OK, OK), recovered) == []
    assert told(history(OK), recovered) == []


def test_retries_exhausted_timed_out_and_slow() -> None:
    assert told(history(FAIL), rule(RuleEvent.RETRIES_EXHAUSTED), dead=True) == [
        "retries_exhausted"
    ]
    assert told(history(FAIL), rule(RuleEvent.RETRIES_EXHAUSTED), dead=False) == []
    assert told(history(TIMEOUT), rule(RuleEvent.TIMED_OUT)) == ["timed_out"]
    assert told(history(FAIL), rule(RuleEvent.TIMED_OUT)) == []
    slow = rule(RuleEvent.SLOW, warn_after_seconds=60)
    assert told([run(1, OK, ran=61.0)], slow) == ["slow"]
    assert told([run(1, OK, ran=59.0)], slow) == []


def test_a_jobs_own_rules_replace_the_global_default() -> None:
    global_rule = rule(RuleEvent.FAILED, name="g", scope=RuleScope.GLOBAL, target="")
    own = rule(RuleEvent.FAILED, name="own")
    other = rule(RuleEvent.FAILED, name="other", target="another-job")
    by_schedule = rule(RuleEvent.FAILED, name="s", scope=RuleScope.SCHEDULE, target="hourly")
    rules = [global_rule, own, other, by_schedule]
    assert [r.name for r in rules_for(rules, job="nightly", schedule=None)] == ["own"]
    assert [r.name for r in rules_for(rules, job="nightly", schedule="hourly")] == ["own", "s"]
    assert [r.name for r in rules_for(rules, job="third", schedule=None)] == ["g"]
    disabled = dataclasses.replace(own, enabled=False)
    assert [r.name for r in rules_for([global_rule, disabled], job="nightly", schedule=None)] == [
        "g"
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "https://user:pw@host/"}, "url"),
        ({"url": "https://host/a b"}, "url"),
        ({"secret": None}, "secret"),
        ({"events": ()}, "events"),
        ({"events": (RuleEvent.MISSED,)}, "events"),
        ({"events": (RuleEvent.SLOW,)}, "warnAfterSeconds"),
        ({"failures_in_a_row": 0}, "failuresInARow"),
        ({"timeout_seconds": 0.0}, "timeoutSeconds"),
        ({"target": ""}, "target"),
        ({"name": "bad name"}, "name"),
    ],
)
def test_a_bad_rule_names_its_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRule) as caught:
        check_rule(
            rule(RuleEvent.FAILED, **changes) if "events" not in changes else rule(**changes)
        )
    assert caught.value.field == field


def test_the_signature_is_an_hmac_of_the_timestamp_and_the_body() -> None:
    body = messages.webhook_body({"event": "failed", "subject": {"job": "nightly"}})
    shown = messages.signature("k3y", 1700000000, body)
    expected = hmac.new(b"k3y", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert shown == f"sha256={expected}"
    assert messages.signature("k3y", 1700000001, body) != shown  # the time is signed too


def test_a_chat_message_fills_its_template_on_one_line() -> None:
    message = {
        "event": "failed",
        "rule": "ops",
        "subject": {"job": "nightly", "status": "failed", "error": "exit 3\n\x1b[31mboom"},
    }
    body = json.loads(messages.chat_body("{job} {event} ({status}): {error} {unknown}", message))
    assert body == {"text": "nightly failed (failed): exit 3  [31mboom {unknown}"}


def test_a_rule_never_shows_its_secret_and_is_stored_only_sealed() -> None:
    clear = rule(RuleEvent.FAILED, secret="clear-secret-1f")
    assert "clear-secret-1f" not in repr(clear) + str(clear.public())
    with pytest.raises(ValueError, match="sealed"):
        rule_to_row(clear)
    stored = dataclasses.replace(clear, secret=None, sealed_secret=b"\x00sealed\xff")
    assert "sealed" not in repr(stored)
    assert stored.public()["secretSet"] is True
    body = json.loads(json.dumps(rule_to_row(stored)))
    assert "secret" not in body
    back = rule_from_row("r", body, T0, T0)
    assert (back.secret, back.sealed_secret) == (None, b"\x00sealed\xff")


def test_a_body_stored_before_secrets_were_sealed_is_read_with_its_clear_secret() -> None:
    body = {**rule_to_row(rule(RuleEvent.FAILED, secret=None)), "secret": "old-clear"}
    del body["sealedSecret"]
    assert plain_secret(body) == "old-clear"
    assert rule_from_row("r", body, T0, T0).secret == "old-clear"
    assert plain_secret({**body, "secret": None}) is None
    assert secret_context("ops") == "notification-rule/ops"

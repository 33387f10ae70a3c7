"""Task value objects refuse what the queue must never store."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from store.errors import InvalidTask, StoreError
from store.queue.models import (
    MAX_KEY_LENGTH,
    MAX_PAYLOAD_BYTES,
    KeyMode,
    NewTask,
    Priority,
    check_queue_name,
)
from store.queue.retry import RetryPolicy


def test_a_new_task_has_sensible_defaults():
    task = NewTask(handler="job.run")
    assert task.payload == {}
    assert task.queue == "default"
    assert task.priority == 0
    assert task.run_at is None
    assert task.key is None
    assert task.key_mode is KeyMode.REPLACE
    assert task.retry == RetryPolicy()


def test_a_new_task_is_frozen_and_keyword_only():
    task = NewTask(handler="h")
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.handler = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        NewTask("h")  # type: ignore[misc]


@pytest.mark.parametrize(
    "handler", ["", " job", "job run", "-job", "job/run", "x" * 129, "é", None, 3]
)
def test_a_bad_handler_name_is_refused(handler):
    with pytest.raises(InvalidTask, match="handler"):
        NewTask(handler=handler)


@pytest.mark.parametrize("handler", ["h", "job.run", "Job_Run-2:x", "9", "x" * 128])
def test_good_handler_names_are_accepted(handler):
    assert NewTask(handler=handler).handler == handler


@pytest.mark.parametrize("queue", ["", "a b", ".hidden", "q/x", "x" * 129])
def test_a_bad_queue_name_is_refused(queue):
    with pytest.raises(InvalidTask, match="queue"):
        NewTask(handler="h", queue=queue)
    with pytest.raises(InvalidTask):
        check_queue_name(queue)


@pytest.mark.parametrize("payload", [["a"], "text", 3, None, ("t",)])
def test_a_payload_that_is_not_a_json_object_is_refused(payload):
    with pytest.raises(InvalidTask, match="payload"):
        NewTask(handler="h", payload=payload)


@pytest.mark.parametrize(
    "payload", [{"x": object()}, {"x": float("nan")}, {"x": float("inf")}, {"x": {1, 2}}]
)
def test_a_payload_that_is_not_json_serialisable_is_refused(payload):
    with pytest.raises(InvalidTask, match="payload"):
        NewTask(handler="h", payload=payload)


def test_a_payload_over_one_mebibyte_is_refused():
    NewTask(handler="h", payload={"x": "a" * (MAX_PAYLOAD_BYTES - 100)})
    with pytest.raises(InvalidTask, match="payload"):
        NewTask(handler="h", payload={"x": "a" * MAX_PAYLOAD_BYTES})


def test_the_payload_is_stored_as_compact_json():
    task = NewTask(handler="h", payload={"b": [1, 2], "a": "ü"})
    assert task.payload_json == '{"b":[1,2],"a":"\\u00fc"}'


@pytest.mark.parametrize("priority", [-1001, 1001, 10**6])
def test_a_priority_out_of_range_is_refused(priority):
    with pytest.raises(InvalidTask, match="priority"):
        NewTask(handler="h", priority=priority)


@pytest.mark.parametrize("priority", [-1000, -20, 0, 30, 1000])
def test_priorities_in_range_are_accepted(priority):
    assert NewTask(handler="h", priority=priority).priority == priority


def test_a_naive_run_at_is_refused():
    with pytest.raises(InvalidTask, match="run_at"):
        NewTask(handler="h", run_at=datetime(2026, 1, 1, 12, 0))
    aware = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert NewTask(handler="h", run_at=aware).run_at == aware


def test_a_key_must_be_1_to_512_characters():
    with pytest.raises(InvalidTask, match="key"):
        NewTask(handler="h", key="")
    with pytest.raises(InvalidTask, match="key"):
        NewTask(handler="h", key="k" * (MAX_KEY_LENGTH + 1))
    assert NewTask(handler="h", key="k" * MAX_KEY_LENGTH).key == "k" * MAX_KEY_LENGTH


def test_a_key_mode_that_is_not_a_key_mode_is_refused():
    with pytest.raises(InvalidTask, match="key mode"):
        NewTask(handler="h", key="k", key_mode="replace")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("replace", KeyMode.REPLACE),
        ("preserve_run_at", KeyMode.PRESERVE_RUN_AT),
        ("dedupe", KeyMode.DEDUPE),
    ],
)
def test_key_modes_parse_from_their_names(text, mode):
    assert KeyMode.parse(text) is mode


@pytest.mark.parametrize("text", ["", "Replace", "upsert", "preserve-run-at"])
def test_an_unknown_key_mode_is_refused_naming_the_known_ones(text):
    with pytest.raises(InvalidTask, match="replace, preserve_run_at, dedupe"):
        KeyMode.parse(text)


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("emergency", -20),
        ("fast_high", -10),
        ("fast_default", 0),
        ("bulk_default", 10),
        ("bulk_low", 20),
        ("bulk_lowest", 30),
        ("BULK_LOW", 20),
        (" fast_high ", -10),
        ("7", 7),
        ("-1000", -1000),
        (1000, 1000),
        (-5, -5),
        (Priority.EMERGENCY, -20),
    ],
)
def test_priorities_parse_from_names_and_numbers(value, number):
    assert Priority.parse(value) == number


@pytest.mark.parametrize("value", ["urgent", "", "1.5", "1001", -1001, True])
def test_an_unknown_or_out_of_range_priority_is_refused(value):
    with pytest.raises(InvalidTask, match="priority"):
        Priority.parse(value)


def test_named_priorities_match_the_backfill_levels():
    assert {p.name.lower(): int(p) for p in Priority} == {
        "emergency": -20,
        "fast_high": -10,
        "fast_default": 0,
        "bulk_default": 10,
        "bulk_low": 20,
        "bulk_lowest": 30,
    }


def test_invalid_task_is_a_store_error_and_a_value_error():
    with pytest.raises(StoreError):
        NewTask(handler="")
    with pytest.raises(ValueError, match="handler"):
        NewTask(handler="")

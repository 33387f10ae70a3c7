"""Tasks from library arguments: payload encoding, priority names, retry presets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

import longshore
from store.queue.retry import PRESETS


class Order(BaseModel):
    id: int
    placed: datetime


@dataclass
class Point:
    x: int
    y: int


def test_models_dataclasses_and_mappings_encode_to_json_objects():
    placed = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert longshore.new_task("h", Order(id=1, placed=placed)).payload == {
        "id": 1,
        "placed": "2026-01-02T03:04:05Z",
    }
    assert longshore.new_task("h", Point(x=1, y=2)).payload == {"x": 1, "y": 2}
    assert longshore.new_task("h", {"a": [1]}).payload == {"a": [1]}
    assert longshore.new_task("h").payload == {}


@pytest.mark.parametrize("payload", [[1, 2], "text", 3, object()])
def test_a_payload_that_is_not_a_json_object_is_refused(payload):
    with pytest.raises(longshore.InvalidTask, match="payload"):
        longshore.new_task("h", payload)


def test_priorities_take_numbers_and_level_names():
    assert longshore.new_task("h", priority="emergency").priority == -20
    assert longshore.new_task("h", priority=longshore.Priority.BULK_LOWEST).priority == 30
    assert longshore.new_task("h", priority=-3).priority == -3
    with pytest.raises(longshore.InvalidTask, match="priority"):
        longshore.new_task("h", priority="urgent")


def test_retry_takes_a_preset_or_a_policy_and_max_attempts_overrides_either():
    assert longshore.new_task("h").retry == PRESETS["default"]
    assert longshore.new_task("h", retry="aggressive").retry == PRESETS["aggressive"]
    policy = longshore.RetryPolicy(max_attempts=2, base_delay=0.5)
    assert longshore.new_task("h", retry=policy).retry == policy
    capped = longshore.new_task("h", retry=policy, max_attempts=7).retry
    assert (capped.max_attempts, capped.base_delay) == (7, 0.5)
    with pytest.raises(longshore.InvalidTask, match="unknown retry policy"):
        longshore.new_task("h", retry="sometimes")


def test_run_at_takes_a_time_or_a_delay_and_key_mode_a_name():
    delayed = longshore.new_task("h", run_at=timedelta(minutes=5))
    assert delayed.run_at is not None
    assert timedelta(minutes=4) < delayed.run_at - datetime.now(UTC) <= timedelta(minutes=5)
    keyed = longshore.new_task("h", key="k", key_mode="dedupe")
    assert keyed.key_mode is longshore.KeyMode.DEDUPE
    with pytest.raises(longshore.InvalidTask, match="key mode"):
        longshore.new_task("h", key="k", key_mode="sometimes")

"""Retry policies: exponential backoff with jitter, presets, and giving up."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from store.errors import InvalidTask
from store.queue.retry import PRESETS, RetryPolicy

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_the_default_policy_tries_five_times():
    policy = RetryPolicy()
    assert policy.max_attempts == 5
    assert RetryPolicy.preset("default") == policy


@pytest.mark.parametrize(
    ("name", "max_attempts", "base_delay", "factor", "max_delay"),
    [
        ("default", 5, 1.0, 2.0, 300.0),
        ("fast", 3, 0.1, 2.0, 30.0),
        ("aggressive", 12, 0.5, 2.0, 300.0),
        ("conservative", 4, 30.0, 3.0, 3600.0),
    ],
)
def test_presets_have_their_documented_shape(name, max_attempts, base_delay, factor, max_delay):
    policy = RetryPolicy.preset(name)
    assert (policy.max_attempts, policy.base_delay, policy.factor, policy.max_delay) == (
        max_attempts,
        base_delay,
        factor,
        max_delay,
    )


def test_presets_order_from_quick_to_patient():
    fast, aggressive, conservative = (
        RetryPolicy.preset(n) for n in ("fast", "aggressive", "conservative")
    )
    assert fast.base_delay < aggressive.base_delay < conservative.base_delay
    assert aggressive.max_attempts > conservative.max_attempts


def test_a_preset_can_override_max_attempts_only():
    policy = RetryPolicy.preset("conservative", max_attempts=9)
    base = PRESETS["conservative"]
    assert policy.max_attempts == 9
    assert (policy.base_delay, policy.factor, policy.max_delay, policy.jitter) == (
        base.base_delay,
        base.factor,
        base.max_delay,
        base.jitter,
    )
    assert PRESETS["conservative"].max_attempts == 4  # the preset itself is unchanged


def test_an_unknown_preset_is_refused_naming_the_known_ones():
    with pytest.raises(InvalidTask, match="aggressive, conservative, default, fast"):
        RetryPolicy.preset("eager")


def test_without_jitter_the_delay_doubles_until_the_cap():
    policy = RetryPolicy(base_delay=1.0, factor=2.0, max_delay=10.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_the_factor_sets_the_growth():
    policy = RetryPolicy(base_delay=30.0, factor=3.0, max_delay=3600.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 6)] == [30.0, 90.0, 270.0, 810.0, 2430.0]
    assert policy.delay(6) == 3600.0


def test_a_huge_attempt_count_stays_at_the_cap():
    policy = RetryPolicy(max_attempts=1000, base_delay=1.0, factor=10.0, max_delay=60.0)
    rng = random.Random(1)
    assert 60.0 * (1 - policy.jitter) <= policy.delay(999, rng) <= 60.0


def test_jitter_only_shortens_the_delay_by_at_most_its_fraction():
    policy = RetryPolicy(base_delay=10.0, factor=2.0, max_delay=1000.0, jitter=0.25)
    rng = random.Random(20260301)
    for attempts in range(1, 8):
        full = min(1000.0, 10.0 * 2.0 ** (attempts - 1))
        delays = [policy.delay(attempts, rng) for _ in range(200)]
        assert all(full * 0.75 <= d <= full for d in delays)
        # the jitter spreads the delays (a burst does not come back as a burst)
        assert max(delays) - min(delays) > full * 0.2


def test_jitter_is_reproducible_with_a_seeded_random():
    policy = RetryPolicy(jitter=0.5)
    first = [policy.delay(n, random.Random(7)) for n in range(1, 5)]
    second = [policy.delay(n, random.Random(7)) for n in range(1, 5)]
    assert first == second


def test_full_jitter_can_spread_down_to_zero():
    policy = RetryPolicy(base_delay=8.0, jitter=1.0)
    rng = random.Random(3)
    delays = [policy.delay(1, rng) for _ in range(500)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert min(delays) < 0.5
    assert max(delays) > 7.5


def test_next_run_at_is_now_plus_the_delay():
    policy = RetryPolicy(max_attempts=5, base_delay=2.0, factor=2.0, jitter=0.0)
    assert policy.next_run_at(attempts=1, now=NOW) == NOW + timedelta(seconds=2)
    assert policy.next_run_at(attempts=3, now=NOW) == NOW + timedelta(seconds=8)


def test_next_run_at_gives_up_once_attempts_reach_max_attempts():
    policy = RetryPolicy(max_attempts=3, base_delay=1.0, jitter=0.0)
    assert policy.next_run_at(attempts=2, now=NOW) is not None
    assert policy.next_run_at(attempts=3, now=NOW) is None
    assert policy.next_run_at(attempts=4, now=NOW) is None


def test_a_single_attempt_policy_never_retries():
    assert RetryPolicy(max_attempts=1).next_run_at(attempts=1, now=NOW) is None


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_gives_up_after_its_max_attempts(name):
    policy = RetryPolicy.preset(name)
    rng = random.Random(11)
    retries = [
        policy.next_run_at(attempts=n, now=NOW, rng=rng) for n in range(1, policy.max_attempts + 1)
    ]
    assert all(r is not None and r >= NOW for r in retries[:-1])
    assert retries[-1] is None


@pytest.mark.parametrize(
    "policy",
    [
        RetryPolicy(),
        *PRESETS.values(),
        RetryPolicy(max_attempts=1, base_delay=0.0, factor=1.0, max_delay=0.0, jitter=1.0),
    ],
)
def test_a_policy_survives_a_json_round_trip(policy):
    data = policy.to_json()
    assert set(data) == {"maxAttempts", "baseDelay", "factor", "maxDelay", "jitter"}
    assert RetryPolicy.from_json(data) == policy


def test_to_json_uses_the_documented_field_names():
    policy = RetryPolicy(max_attempts=7, base_delay=1.5, factor=3.0, max_delay=60.0, jitter=0.1)
    assert policy.to_json() == {
        "maxAttempts": 7,
        "baseDelay": 1.5,
        "factor": 3.0,
        "maxDelay": 60.0,
        "jitter": 0.1,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 1001},
        {"max_attempts": 2.5},
        {"max_attempts": True},
        {"base_delay": -1.0},
        {"max_delay": -0.1},
        {"factor": 0.5},
        {"jitter": -0.1},
        {"jitter": 1.5},
    ],
)
def test_an_invalid_policy_is_refused(kwargs):
    with pytest.raises(InvalidTask):
        RetryPolicy(**kwargs)


def test_from_json_refuses_an_invalid_policy():
    data = RetryPolicy().to_json() | {"maxAttempts": 0}
    with pytest.raises(InvalidTask):
        RetryPolicy.from_json(data)

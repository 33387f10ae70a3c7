"""The sliding-window cap of schedule run-now calls (``admin.ratelimit``)."""

from __future__ import annotations

import pytest

from admin.config import AdminConfig
from admin.ratelimit import SlidingWindow
from service.api_listener import _admin_config
from service.settings import load_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_limit_calls_per_window_and_learns_how_long_to_wait() -> None:
    clock = Clock()
    window = SlidingWindow(2, 60.0, clock=clock)
    assert window.acquire("a") is None
    clock.now += 10
    assert window.acquire("a") is None
    clock.now += 5
    assert window.acquire("a") == pytest.approx(45.0)
    assert window.used("a") == 2
    # Other keys have their own allowance.
    assert window.acquire("b") is None
    # The window slides: the first call expires 60 s after it was made, the second later.
    clock.now = 1060.0
    assert window.acquire("a") is None
    assert window.acquire("a") == pytest.approx(10.0)
    clock.now = 1130.0
    assert window.used("a") == 0


def test_a_released_call_does_not_count_and_empty_keys_are_dropped() -> None:
    clock = Clock()
    window = SlidingWindow(1, 60.0, clock=clock)
    assert window.acquire("ghost") is None
    window.release("ghost")
    assert len(window) == 0
    assert window.acquire("ghost") is None
    assert window.acquire("ghost") is not None
    window.release("never-seen")
    assert len(window) == 1


def test_expired_keys_are_swept_when_many_are_held() -> None:
    clock = Clock()
    window = SlidingWindow(1, 1.0, clock=clock)
    for n in range(1100):
        assert window.acquire(f"k{n}") is None
    clock.now += 2
    assert window.acquire("fresh") is None
    assert len(window) == 1


@pytest.mark.parametrize(("limit", "seconds"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_a_bad_limit_or_window_is_refused(limit: int, seconds: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        SlidingWindow(limit, seconds)


def test_the_cap_comes_from_the_settings() -> None:
    settings = load_settings(
        {"WORKER_ADMIN_SCHEDULE_RUN_MAX": "3", "WORKER_ADMIN_SCHEDULE_RUN_WINDOW": "90s"}
    )
    config = _admin_config(settings, {"alice": "secret"})
    assert (config.schedule_run_max, config.schedule_run_window) == (3, 90.0)
    defaults = AdminConfig()
    assert (defaults.schedule_run_max, defaults.schedule_run_window) == (10, 60.0)


@pytest.mark.parametrize(("limit", "seconds"), [(0, 60.0), (1, 0.0)])
def test_admin_config_refuses_a_bad_cap(limit: int, seconds: float) -> None:
    with pytest.raises(ValueError, match="schedule run"):
        AdminConfig(schedule_run_max=limit, schedule_run_window=seconds)

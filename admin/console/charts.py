"""Small charts drawn server-side as SVG geometry (the template writes the elements; no
script, no inline style)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from store.jobs.models import Run, RunStatus

_FAILED = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT})


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    peak: float
    axis: tuple[tuple[float, str], ...] = ()


def runs_per_hour(runs: Iterable[Run], now: datetime, hours: int = 24) -> Chart:
    """Succeeded and failed runs (by the hour they finished) over the last ``hours``."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    ok = [0] * hours
    bad = [0] * hours
    for run in runs:
        if run.finished_at is None or run.finished_at < start:
            continue
        slot = int((run.finished_at - start).total_seconds() // 3600)
        if 0 <= slot < hours:
            if run.status == RunStatus.SUCCEEDED:
                ok[slot] += 1
            elif run.status in _FAILED:
                bad[slot] += 1
    width, height, slot_width = 24 * 20, 120, 20.0
    peak = max([1, *ok, *bad])
    bars: list[Bar] = []
    axis: list[tuple[float, str]] = []
    for index in range(hours):
        hour = start + timedelta(hours=index)
        x = index * slot_width
        for offset, count, kind in ((2.0, ok[index], "ok"), (10.0, bad[index], "failed")):
            tall = (height - 20) * count / peak
            label = f"{hour:%H}:00 {count} {'succeeded' if kind == 'ok' else 'failed'}"
            bars.append(Bar(x + offset, height - 16 - tall, 8.0, tall, kind, label))
        if index % 4 == 0:
            axis.append((x + 2, f"{hour:%H}h"))
    return Chart(width, height, tuple(bars), peak, tuple(axis))


def durations(values: Sequence[tuple[str, float | None, str]]) -> Chart:
    """One bar per run (oldest first): ``(label, seconds, status)``."""
    width, height = max(20 * len(values), 200), 100
    peak = max([1.0, *(seconds or 0.0 for _, seconds, _ in values)])
    bars = []
    for index, (label, seconds, status) in enumerate(values):
        tall = (height - 10) * (seconds or 0.0) / peak
        kind = "ok" if status == RunStatus.SUCCEEDED else "failed"
        bars.append(Bar(index * 20 + 2, height - tall, 14.0, tall, kind, label))
    return Chart(width, height, tuple(bars), peak)

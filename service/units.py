"""Parsing of setting values: human durations (``30s``, ``1h30m``, ``168h``, ``500ms``),
sizes (``64MiB``), ``name=number`` lists and per-job retention rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from store.jobs.models import JOB_NAME
from store.queue.models import QUEUE_NAME

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a plain number (seconds) or unit parts like ``1h30m``, ``250ms``.

    Raises ``ValueError`` naming the text when it is not a duration.
    """
    value = text.strip().lower()
    if not value:
        raise ValueError("empty duration")
    try:
        seconds = float(value)
    except ValueError:
        pos = 0
        seconds = 0.0
        for match in _PART.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match[1]) * _UNIT_SECONDS[match[2]]
            pos = match.end()
        if pos != len(value):
            raise ValueError(
                f"{text!r} is not a duration (use e.g. 30s, 15m, 168h, 1h30m, 500ms)"
            ) from None
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{text!r} is not a finite, non-negative duration")
    return seconds


_SIZE = re.compile(r"^(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$")
_SIZE_FACTOR = {
    None: 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """Bytes in ``text``: a plain integer or a number with a unit (``64MiB``, ``512k``,
    ``1GB``; ``k``/``m``/``g`` are binary). Raises ``ValueError`` naming the text."""
    match = _SIZE.match(text.strip().lower())
    if not match:
        raise ValueError(f"{text!r} is not a size (use e.g. 1048576, 512KiB, 64MiB, 1GB)")
    return int(match[1]) * _SIZE_FACTOR[match[2]]


def duration_seconds(value: Any) -> float:
    """A setting's duration: a number of seconds as it is, text by :func:`parse_duration`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return parse_duration(str(value))


_PAIR = re.compile(r"^\s*([^=\s]+)\s*=\s*([^=\s]+)\s*$")


def parse_pairs(value: Any, what: str) -> dict[str, int]:
    """``name=number,name=number`` into a dict; names must be valid queue names."""
    if isinstance(value, Mapping):
        return {str(k): int(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise ValueError(f"expected 'name={what},...'")
    result: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        match = _PAIR.match(item)
        if not match or not match[2].isdigit():
            raise ValueError(f"{item!r} is not 'name={what}'")
        name, number = match[1], int(match[2])
        if not QUEUE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid queue name")
        result[name] = number
    return result


def _duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return parse_duration(str(value))


def parse_retention_rules(text: str) -> dict[str, tuple[int, float]]:
    """``job=KEEP_LAST[/KEEP_FOR],...`` (``nightly=365/90d,heartbeat=5``) into
    ``{job: (keep_last, keep_for seconds)}``; a rule without ``/KEEP_FOR`` keeps no run
    for its age. Raises ``ValueError`` naming the bad item."""
    rules: dict[str, tuple[int, float]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, rule = (part.strip() for part in item.partition("="))
        keep_last, _, keep_for = (part.strip() for part in rule.partition("/"))
        if not equals or not JOB_NAME.fullmatch(name) or not keep_last.isdigit():
            raise ValueError(f"{item!r} is not 'job=KEEP_LAST[/KEEP_FOR]' (e.g. nightly=30/7d)")
        if int(keep_last) < 1:
            raise ValueError(f"{item!r}: KEEP_LAST must be at least 1")
        rules[name] = (int(keep_last), parse_duration(keep_for) if keep_for else 0.0)
    return rules


def parse_job_counts(text: str) -> dict[str, int]:
    """``job=K,...`` (``nightly=10,heartbeat=1``) into ``{job: K}``, each K at least 1.
    Raises ``ValueError`` naming the bad item."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, count = (part.strip() for part in item.partition("="))
        if not equals or not JOB_NAME.fullmatch(name) or not count.isdigit() or int(count) < 1:
            raise ValueError(f"{item!r} is not 'job=K' with K at least 1 (e.g. nightly=5)")
        counts[name] = int(count)
    return counts

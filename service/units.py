"""Parsing of human durations (``30s``, ``1h30m``, ``168h``, ``500ms``) and sizes (``64MiB``)."""

from __future__ import annotations

import re

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

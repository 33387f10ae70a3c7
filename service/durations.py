"""Parsing of human durations such as ``30s``, ``1h30m``, ``168h``, ``500ms``."""

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

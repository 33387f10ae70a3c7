"""Schedule specs: crontab(5) with an optional seconds field, @-macros and ``@every``.

:func:`parse_spec` turns text into a frozen :class:`CronSpec` (the grammar, in
:mod:`scheduler.spec.grammar`); :func:`next_fire_time` and :func:`previous_fire_time` compute
its fire instants in a schedule's IANA time zone, daylight-saving changes included (in
:mod:`scheduler.spec.fire_times`). The rules are those of docs/schedules.md.
"""

from scheduler.spec.fire_times import next_fire_time, previous_fire_time
from scheduler.spec.grammar import CronSpec, parse_spec, parse_timezone

__all__ = [
    "CronSpec",
    "next_fire_time",
    "parse_spec",
    "parse_timezone",
    "previous_fire_time",
]

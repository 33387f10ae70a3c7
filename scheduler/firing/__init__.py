"""Firings of schedules, shared by clock ticks, catch-up and manual runs.

:class:`Firer` (in :mod:`scheduler.firing.firer`) makes them in batches; the overlap
policy is :mod:`scheduler.firing.overlap`, the records and events a batch leaves behind
:mod:`scheduler.firing.reporting`, and the value objects :mod:`scheduler.firing.models`.
"""

from scheduler.firing.firer import Firer
from scheduler.firing.models import SCHEDULE_SKIPPED, FiringResult, Skip, SkipReason, Tick

__all__ = ["SCHEDULE_SKIPPED", "Firer", "FiringResult", "Skip", "SkipReason", "Tick"]

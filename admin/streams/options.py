"""The timing of an app's streams, read from ``app.state`` (tests shorten the intervals)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette


@dataclass(kw_only=True)
class EventsStreamOptions:
    """Timing of the live streams; set ``app.state.events_stream_options`` to change it."""

    heartbeat_seconds: float = 15.0
    """How often a quiet stream shows it is alive: a ``heartbeat`` event on ``/events``, a
    keep-alive comment on a followed run's output."""
    snapshot_debounce_seconds: float = 1.0
    overview_interval_seconds: float = 5.0
    retry_ms: int = 3000
    """The reconnection delay ``/events`` suggests to its clients."""
    snapshot_limit: int = 25
    buffer: int = 0
    """Per-client subscription buffer (events); 0 is the event store's default."""


def options_of(app: Starlette) -> EventsStreamOptions:
    found = getattr(app.state, "events_stream_options", None)
    return found if isinstance(found, EventsStreamOptions) else EventsStreamOptions()

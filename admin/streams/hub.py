"""The open streams of one app and what they share; ending them all before the server stops.

An endless stream never ends by itself, and uvicorn waits for open responses when it stops:
the server's owner calls :func:`end_event_streams` first, which ends every live stream of
the app now (and any opened later), whatever its route. Each live stream registers its
:class:`~admin.streams.reader.StreamSubscription` here for as long as it follows the store
(:meth:`StreamHub.following`).

What does not depend on the client is done once per app and shared by its streams: each
stored event's frame is encoded once (:class:`~admin.streams.frames.FrameCache`), and each
snapshot is computed at most once per debounce interval
(:class:`~admin.streams.snapshots.SnapshotCache`), in tasks the hub owns until the app
shuts down (:func:`close_streams`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from starlette.applications import Starlette
from starlette.requests import Request

from admin.routes.overview import overview_of
from admin.seed.items import seed_items_of
from admin.services import AdminServices
from admin.streams.frames import FrameCache
from admin.streams.reader import StreamSubscription
from admin.streams.snapshots import SnapshotCache
from store.events import EventStore


class StreamHub:
    """The live streams of one app and their shared caches: :meth:`close` ends them all."""

    def __init__(self) -> None:
        self.closed = False
        self.frames = FrameCache()
        self.snapshots: SnapshotCache | None = None
        self._live: set[StreamSubscription] = set()

    @property
    def open(self) -> int:
        """How many streams follow the store now."""
        return len(self._live)

    def close(self) -> None:
        """End every live stream now and every one that starts following later."""
        self.closed = True
        for live in tuple(self._live):
            live.end()

    @contextmanager
    def following(self, live: StreamSubscription) -> Iterator[None]:
        """Count ``live`` among the open streams while the block runs, and end it with them
        (at once when they were already ended)."""
        self._live.add(live)
        if self.closed:
            live.end()
        try:
            yield
        finally:
            self._live.discard(live)

    def snapshot_cache(
        self, request: Request, services: AdminServices, events: EventStore
    ) -> SnapshotCache:
        if self.snapshots is None:
            self.snapshots = SnapshotCache(
                services,
                events,
                overview_of(request, services),
                seed_items_of(request.app, services),
            )
        return self.snapshots


def streams_of(app: Starlette) -> StreamHub:
    """The app's :class:`StreamHub`, created on first use."""
    hub: StreamHub | None = getattr(app.state, "admin_event_streams", None)
    if hub is None:
        hub = StreamHub()
        app.state.admin_event_streams = hub
    return hub


def end_event_streams(app: Starlette) -> None:
    """End every open stream of ``app`` now (and any opened later): call it before stopping
    the server, which otherwise waits for streams to end."""
    streams_of(app).close()


async def close_streams(app: Starlette) -> None:
    """Cancel and await the app's snapshot computations still running (at shutdown, once
    no stream is left to want them)."""
    hub: StreamHub | None = getattr(app.state, "admin_event_streams", None)
    if hub is not None and hub.snapshots is not None:
        await hub.snapshots.close()

"""The live event hub: replay from the store, then live events, without gap or duplicate.

A :class:`Subscription` starts in *replay* mode: it reads events after its last id from the
store in pages. When a page comes back empty it switches to *live* mode, synchronously (no
``await`` in between): it takes whatever the hub published since that page was read from the
hub's recent-events ring, and registers its bounded buffer. From then on the hub pushes every
matching event into the buffer as the store indexes it. Because the store indexes and
publishes in id order, and the switch happens without yielding to the event loop, no event is
missed or seen twice. If the ring no longer reaches back to the subscription's last id (many
events were published while a page was being read), it simply reads another page.

Publishing never waits: a full buffer marks the subscriber *dropped*; it still receives
what is buffered, then its iterator raises :class:`SubscriberDropped` carrying the last id
it delivered, so it can subscribe again from there (the store replays the rest from disk).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from store.events.errors import SubscriberDropped
from store.events.models import Event, EventFilter

logger = logging.getLogger(__name__)

ReadPage = Callable[[int, EventFilter, int], Awaitable[Sequence[Event]]]
RING_SIZE = 4096
PAGE_SIZE = 512


class EventHub:
    """Fans published events out to subscriptions (one hub per store instance)."""

    def __init__(self, read_page: ReadPage, last_id: int, *, buffer: int) -> None:
        self._read_page = read_page
        self._buffer = buffer
        self._ring: deque[Event] = deque(maxlen=RING_SIZE)
        self._floor = last_id  # every event above this id is in the ring or newer
        self.last_id = last_id
        self._subscribers: set[Subscription] = set()
        self._closed = False

    def publish(self, events: Sequence[Event]) -> None:
        """Deliver ``events`` (ascending ids, above every id published before). Never blocks."""
        if not events:
            return
        ring = self._ring
        for event in events:
            if len(ring) == ring.maxlen:
                self._floor = ring[0].id
            ring.append(event)
        self.last_id = events[-1].id
        # A subscriber dropped part way through ignores the rest (``_offer``).
        for sub in tuple(self._subscribers):
            matches = sub.filter.matches
            for event in events:
                if matches(event):
                    sub._offer(event)

    def subscribe(
        self, after_id: int = 0, event_filter: EventFilter | None = None, *, buffer: int = 0
    ) -> Subscription:
        """A subscription to events with ids above ``after_id`` that match the filter."""
        return Subscription(self, after_id, event_filter or EventFilter(), buffer or self._buffer)

    def close(self) -> None:
        """End every subscription (their iterators stop after what they already hold)."""
        self._closed = True
        for sub in tuple(self._subscribers):
            sub._end()
        self._subscribers.clear()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    # --- used by Subscription ------------------------------------------------------------

    def _go_live(self, sub: Subscription) -> list[Event] | None:
        """Register ``sub`` and return the ring's events after its last id, or None when
        the ring does not reach back that far (the caller reads another page first)."""
        if sub.last_id < self._floor:
            return None
        missed = [e for e in self._ring if e.id > sub.last_id and sub.filter.matches(e)]
        if not self._closed:
            self._subscribers.add(sub)
        return missed

    def _remove(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)


class Subscription(AsyncIterator[Event]):
    """Async iterator of events in id order; see the module docstring.

    Ends (``StopAsyncIteration``) when the store closes or :meth:`close` is called; raises
    :class:`SubscriberDropped` when it fell behind. ``last_id`` is the id of the last event
    it returned (the resume point).
    """

    def __init__(self, hub: EventHub, after_id: int, event_filter: EventFilter, buffer: int):
        self._hub = hub
        self.filter = event_filter
        self.last_id = after_id
        self._pending: deque[Event] = deque()
        self._live: asyncio.Queue[Event] = asyncio.Queue(maxsize=buffer)
        self._wake = asyncio.Event()
        self._mode = "replay"
        self._dropped = False
        self._ended = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._pending:
                return self._deliver(self._pending.popleft())
            if self._mode == "replay":
                await self._replay_page()
                continue
            if not self._live.empty():
                return self._deliver(self._live.get_nowait())
            if self._dropped:
                self._mode = "done"
                raise SubscriberDropped(self.last_id)
            if self._ended or self._mode == "done":
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()

    def ready(self, limit: int = 1000) -> list[Event]:
        """Events available without waiting (see ``EventSubscription.ready``)."""
        out: list[Event] = []
        pending, live = self._pending, self._live
        while len(out) < limit:
            if pending:
                out.append(pending.popleft())
            elif self._mode == "live" and not live.empty():
                out.append(live.get_nowait())
            else:
                break
        if out:
            self.last_id = out[-1].id
        return out

    def close(self) -> None:
        """Stop receiving; the iterator ends after what it already holds."""
        self._hub._remove(self)
        self._end()

    async def aclose(self) -> None:
        self.close()

    def _deliver(self, event: Event) -> Event:
        self.last_id = event.id
        return event

    async def _replay_page(self) -> None:
        if self._hub._closed or self._ended:
            self._mode, self._ended = "done", True
            return
        page = await self._hub._read_page(self.last_id, self.filter, PAGE_SIZE)
        if self._is_ended():  # closed while the page was read: never register with the hub
            self._mode = "done"
            return
        if page:
            self._pending.extend(e for e in page if e.id > self.last_id)
            if self._pending:
                return
        # No await between here and registration: nothing can be published meanwhile.
        missed = self._hub._go_live(self)
        if missed is not None:
            self._pending.extend(missed)
            self._mode = "live"

    def _offer(self, event: Event) -> None:
        if self._dropped or self._ended:
            return
        try:
            self._live.put_nowait(event)
        except asyncio.QueueFull:
            self._dropped = True
            self._hub._remove(self)
            logger.warning("dropped a slow event subscriber", extra={"last_id": self.last_id})
        self._wake.set()

    def _is_ended(self) -> bool:
        return self._ended

    def _end(self) -> None:
        self._ended = True
        self._wake.set()

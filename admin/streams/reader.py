"""One stream's subscription to the event store, read in batches until the stream ends.

Every live stream (``/events``, a followed run's output) reads the store the same way:

- **One wake-up per batch.** :meth:`StreamSubscription.next_batch` returns the events ready
  now, else awaits the first one until a deadline (the stream's next heartbeat or check)
  and takes what else is ready without waiting: no task or timer per event. The wait is an
  ``asyncio.timeout_at`` around the subscription's ``__anext__``, which changes nothing when
  it is cut short (the subscription's position moves only when an event is returned).
- **A slow reader never slows the service.** The store drops a subscription whose bounded
  buffer overflows; it is renewed from the last event returned (the store replays the rest
  from disk), so nothing is lost or sent twice.
- **Ended from outside.** :meth:`StreamSubscription.end` (called by the app's
  :class:`~admin.streams.hub.StreamHub` before the server stops) closes the subscription,
  which wakes the stream; its next :meth:`~StreamSubscription.next_batch` says it ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from store.events import Event, EventFilter, EventStore, SubscriberDropped

BATCH = 500
"""At most this many events are returned (and written to a stream) at once."""


class StreamSubscription:
    """A store subscription after ``after_id`` (matching ``event_filter``), read by one
    stream; ``on_drop(last_id)`` is told when it is renewed after a drop."""

    def __init__(
        self,
        events: EventStore,
        after_id: int,
        *,
        event_filter: EventFilter | None = None,
        buffer: int = 0,
        on_drop: Callable[[int], None],
    ) -> None:
        self._events = events
        self._filter = event_filter
        self._buffer = buffer
        self._on_drop = on_drop
        self._sub = events.subscribe(after_id, event_filter, buffer=buffer)
        self._timeout: asyncio.Timeout | None = None
        self.ended = False
        self.last_id = self._sub.last_id
        """The id of the last event returned (the resume point)."""

    async def next_batch(self, due: float) -> list[Event] | None:
        """The events ready now, else those that arrive before loop time ``due`` (waiting
        for the first, then taking what else is ready; none when ``due`` passes first);
        ``None`` once the subscription ended (the event store closed, or :meth:`end`)."""
        sub = self._sub
        batch = sub.ready(BATCH)
        if batch:
            await asyncio.sleep(0)  # let the server (and the other streams) run
        elif due > asyncio.get_running_loop().time():
            try:
                async with asyncio.timeout_at(due) as self._timeout:
                    first = await sub.__anext__()
            except TimeoutError:
                return None if self.ended else []
            except StopAsyncIteration:
                return None
            except SubscriberDropped as dropped:
                self._resubscribe(dropped.last_id)
                return None if self.ended else []
            finally:
                self._timeout = None
            batch = [first, *sub.ready(BATCH - 1)]
        if self.ended:
            return None
        if batch:
            self.last_id = batch[-1].id
        return batch

    def wake(self) -> None:
        """End the current wait now (the stream has something else to do)."""
        timeout = self._timeout
        if timeout is not None and not timeout.expired():
            timeout.reschedule(asyncio.get_running_loop().time())

    def end(self) -> None:
        """End the stream at its next wake-up (which this causes)."""
        self.ended = True
        self._sub.close()

    def close(self) -> None:
        """Release the subscription (the stream is done with it)."""
        self._sub.close()

    def _resubscribe(self, last_id: int) -> None:
        """After a drop for reading too slowly: continue from the last id returned (the
        store replays what the dropped subscription missed)."""
        self._on_drop(last_id)
        self._sub.close()
        self._sub = self._events.subscribe(
            max(last_id, self.last_id), self._filter, buffer=self._buffer
        )

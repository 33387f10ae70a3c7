"""The hub's switch from replay to live delivery, with a scripted store: events published
while the last replay page is being read are neither lost nor delivered twice."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from store.events import Event, EventFilter, Stream
from store.events.hub import EventHub


def event(event_id: int, key: str = "k") -> Event:
    return Event(
        id=event_id, stream=Stream.RUNS, key=key, type="RunStarted", at=datetime.now(UTC), data={}
    )


async def test_events_published_during_the_last_replay_read_are_delivered_once() -> None:
    stored = [event(i) for i in range(1, 6)]
    hub: EventHub

    async def read_page(after_id: int, flt: EventFilter, limit: int) -> Sequence[Event]:
        page = [e for e in stored if e.id > after_id and flt.matches(e)][:limit]
        if not page:
            # The store indexed two more events while this (empty) page was being read.
            await asyncio.sleep(0)
            if hub.last_id == 5:
                hub.publish([event(6), event(7, key="other")])
        return page

    hub = EventHub(read_page, last_id=5, buffer=10)
    everything = hub.subscribe(after_id=2)
    got = [await anext(everything) for _ in range(5)]
    assert [e.id for e in got] == [3, 4, 5, 6, 7]
    hub.publish([event(8)])
    assert (await anext(everything)).id == 8
    hub.close()
    assert [e async for e in everything] == []


async def test_a_subscriber_the_ring_cannot_cover_reads_another_page_first() -> None:
    stored: list[Event] = []
    reads = []
    hub: EventHub

    async def read_page(after_id: int, flt: EventFilter, limit: int) -> Sequence[Event]:
        reads.append(after_id)
        page = [e for e in stored if e.id > after_id][:limit]
        if not page and not stored:
            # A burst larger than the hub's ring lands while the empty page is read.
            burst = [event(i) for i in range(1, 5001)]
            stored.extend(burst)
            hub.publish(burst)
        return page

    hub = EventHub(read_page, last_id=0, buffer=10)
    sub = hub.subscribe(after_id=0)
    got = [(await anext(sub)).id for _ in range(5000)]
    assert got == list(range(1, 5001))
    assert reads[:2] == [0, 0]


async def test_ready_takes_what_is_buffered_without_waiting_in_order() -> None:
    stored = [event(i) for i in range(1, 4)]

    async def read_page(after_id: int, flt: EventFilter, limit: int) -> Sequence[Event]:
        return [e for e in stored if e.id > after_id][:limit]

    hub = EventHub(read_page, last_id=3, buffer=10)
    sub = hub.subscribe(after_id=0)
    assert sub.ready() == []  # nothing read yet: the replay page needs an await
    assert (await anext(sub)).id == 1
    assert [e.id for e in sub.ready(limit=1)] == [2]
    assert [e.id for e in sub.ready()] == [3]
    assert sub.last_id == 3
    hub.publish([event(4), event(5), event(6)])
    assert (await anext(sub)).id == 4
    assert [e.id for e in sub.ready()] == [5, 6]
    assert sub.ready() == []
    assert sub.last_id == 6
    hub.close()


async def test_a_subscription_closed_while_replaying_never_registers_with_the_hub() -> None:
    stored = [event(i) for i in range(1, 4)]
    sub_holder: list[object] = []

    async def read_page(after_id: int, flt: EventFilter, limit: int) -> Sequence[Event]:
        sub_holder[0].close()  # type: ignore[attr-defined]
        return [e for e in stored if e.id > after_id][:limit]

    hub = EventHub(read_page, last_id=3, buffer=10)
    sub = hub.subscribe(after_id=0)
    sub_holder.append(sub)
    assert [e.id async for e in sub] == []
    assert hub.subscriber_count == 0

"""Errors of the event store, under :class:`store.errors.StoreError`.

    StoreError
     └── EventStoreError           something about the event store
          ├── InvalidEvent         an event, filter or query breaks a rule; also a ValueError
          ├── EventStoreClosed     the store was closed; nothing more is accepted
          └── SubscriberDropped    a subscriber fell too far behind and was cut off; resume
                                   with ``subscribe(after_id=exc.last_id)``

``OSError`` from the file system (disk full, permission denied) reaches callers of
``append`` as :class:`EventStoreError` with the ``OSError`` as ``__cause__``; such an append
is not acknowledged.
"""

from __future__ import annotations

from store.errors import StoreError


class EventStoreError(StoreError):
    """Something about the event store went wrong."""


class InvalidEvent(EventStoreError, ValueError):
    """An event, filter or query breaks a rule; the message names the field."""


class EventStoreClosed(EventStoreError):
    """The store was closed (or failed and stopped writing); the call was not carried out."""


class SubscriberDropped(EventStoreError):
    """The subscriber's buffer overflowed because it read too slowly, so the hub cut it off.

    Every event up to and including ``last_id`` was delivered; subscribe again with
    ``after_id=last_id`` to continue without a gap (the store replays from disk).
    """

    def __init__(self, last_id: int) -> None:
        super().__init__(f"subscriber dropped: it fell behind; resume with after_id={last_id}")
        self.last_id = last_id

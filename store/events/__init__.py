"""The event store: job/run events, schedule events and the audit log (SPEC §6).

See :mod:`store.events.protocol` for the contract and ``docs/events.md`` for the files,
durability modes, retention, sharing between processes and export formats.
"""

from store.events.audit import AuditLog
from store.events.errors import EventStoreClosed, EventStoreError, InvalidEvent, SubscriberDropped
from store.events.file import FileEventStore
from store.events.models import (
    AuditEntry,
    AuditQuery,
    AuditStatus,
    Durability,
    Event,
    EventFilter,
    EventQuery,
    EventType,
    ExportFormat,
    NewEvent,
    Stream,
    payload_hash,
)
from store.events.options import EventStoreOptions, RetentionPolicy, RetentionReport
from store.events.protocol import EventStore, EventSubscription

__all__ = [
    "AuditEntry",
    "AuditLog",
    "AuditQuery",
    "AuditStatus",
    "Durability",
    "Event",
    "EventFilter",
    "EventQuery",
    "EventStore",
    "EventStoreClosed",
    "EventStoreError",
    "EventStoreOptions",
    "EventSubscription",
    "EventType",
    "ExportFormat",
    "FileEventStore",
    "InvalidEvent",
    "NewEvent",
    "RetentionPolicy",
    "RetentionReport",
    "Stream",
    "SubscriberDropped",
    "payload_hash",
]

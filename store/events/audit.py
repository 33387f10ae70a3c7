"""The audit log of admin mutations (SPEC §6), on top of the event store's audit stream.

The admin layer calls :meth:`AuditLog.record` once for every mutating call, accepted
(``status="ok"``) or refused (``status="error"``), with the authenticated actor. Entries
are events of stream ``audit`` keyed by target, so they share the store's ids, durability,
retention (count, age, archive) and live stream.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from store.events.errors import InvalidEvent
from store.events.models import (
    AuditEntry,
    AuditQuery,
    AuditStatus,
    EventType,
    ExportFormat,
    NewEvent,
    Stream,
    payload_hash,
)
from store.events.protocol import EventStore

ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
MAX_DETAIL = 64 * 1024


class AuditLog:
    """Records and reads audit entries through an :class:`EventStore`."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def record(
        self,
        *,
        actor: str,
        request_id: str,
        action: str,
        target: str,
        status: AuditStatus | str,
        body: bytes = b"",
        detail: str = "",
    ) -> AuditEntry:
        """Append one entry and return it once it is durable (per the store's mode).

        ``actor`` is who was authenticated (certificate subject or token name) and must not
        be empty; ``body`` is the raw request body, stored only as its sha256
        (``payload_hash``); ``detail`` is free text (an error message, a summary; at most
        64 KiB, longer text is cut). Raises :class:`InvalidEvent` for a bad field.
        """
        if not actor or not actor.strip():
            raise InvalidEvent("audit actor must not be empty")
        if not ACTION.match(action):
            raise InvalidEvent(f"audit action must look like 'job.upsert', got {action!r}")
        try:
            status = AuditStatus(status)
        except ValueError:
            raise InvalidEvent(f"audit status must be 'ok' or 'error', got {status!r}") from None
        event = await self._store.append(
            NewEvent(
                stream=Stream.AUDIT,
                key=target,
                type=EventType.AUDIT_RECORDED,
                data={
                    "actor": actor,
                    "requestId": request_id,
                    "action": action,
                    "target": target,
                    "status": status.value,
                    "payloadHash": payload_hash(body),
                    "detail": detail[:MAX_DETAIL],
                },
            )
        )
        return AuditEntry.from_event(event)

    async def recent(self, query: AuditQuery | None = None) -> list[AuditEntry]:
        """Newest-first entries matching ``query`` (default limit 100)."""
        return await self._store.recent_audit(query or AuditQuery())

    def export(
        self, query: AuditQuery, fmt: ExportFormat | str, *, newest: bool = False
    ) -> AsyncIterator[bytes]:
        """The export of matching entries (the first ``limit``, or with ``newest`` the last),
        oldest first, as chunks of bytes."""
        return self._store.export_audit(query, ExportFormat(fmt), newest=newest)

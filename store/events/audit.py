"""The audit log of admin mutations (SPEC §6), on top of the event store's audit stream.

The admin layer records exactly one entry for every mutating call, accepted
(``status="ok"``) or refused (``status="error"``), with the authenticated actor. Entries
are events of stream ``audit`` keyed by target, so they share the store's ids, durability,
retention (count, age, archive) and live stream.

A mutation that is about to change something first calls :meth:`AuditLog.begin`: every field
is checked and, with a journal (:mod:`store.events.audit_journal`), the intent is made
durable, so a bad field or a full disk stops the mutation before it takes effect. Its entry is
then written by :meth:`AuditLog.finish`; when that write fails the entry is kept and written
by the next successful one, and an intent a crashed process left behind becomes an entry
(status ``error``, outcome unknown) at the next :meth:`AuditLog.recover`. Either a change has
its entry or the change did not happen.

A target longer than the store's key limit (512 characters) is stored cut, with the sha256
of the whole target appended, so a refusal is audited whatever the target's length.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from store.events.audit_journal import AuditJournal
from store.events.errors import EventStoreError, InvalidEvent
from store.events.models import (
    MAX_KEY_LENGTH,
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
UNKNOWN_OUTCOME = (
    "outcome not recorded: the service stopped or the audit log failed after this "
    "mutation began; it may have taken effect"
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingEntry:
    """A checked audit entry whose mutation may now take effect (see :meth:`AuditLog.begin`)."""

    intent_id: str
    actor: str
    request_id: str
    action: str
    target: str
    body: bytes


class AuditLog:
    """Records and reads audit entries through an :class:`EventStore`; with a ``journal``
    the intent of each begun mutation survives a crash (see the module docstring)."""

    def __init__(self, store: EventStore, *, journal: AuditJournal | None = None) -> None:
        self._store = store
        self._journal = journal
        self._backlog: list[tuple[PendingEntry, AuditStatus, str]] = []

    async def begin(
        self, *, actor: str, request_id: str, action: str, target: str, body: bytes = b""
    ) -> PendingEntry:
        """Check an entry before its mutation takes effect and, with a journal, make the
        intent durable. Raises :class:`InvalidEvent` for a bad field and
        :class:`EventStoreError` when the intent cannot be written: the mutation must then
        not happen."""
        _check(actor, action)
        pending = PendingEntry(
            intent_id=secrets.token_hex(8),
            actor=actor,
            request_id=request_id,
            action=action,
            target=stored_target(target),
            body=body,
        )
        if self._journal is not None:
            intent = {
                "actor": actor,
                "requestId": request_id,
                "action": action,
                "target": pending.target,
                "payloadHash": payload_hash(body),
            }
            try:
                await self._journal.begin(pending.intent_id, intent)
            except OSError as exc:
                raise EventStoreError(f"audit intent not written: {exc}") from exc
        return pending

    async def finish(
        self, pending: PendingEntry, status: AuditStatus | str, detail: str = ""
    ) -> AuditEntry | None:
        """Write the entry of a begun mutation. When the write fails the error is logged,
        not raised (the mutation has taken effect): the entry is kept and written by the
        next successful write, or by :meth:`recover` after a restart."""
        self._backlog.append((pending, AuditStatus(status), detail))
        entry: AuditEntry | None = None
        while self._backlog:
            held, held_status, held_detail = self._backlog[0]
            try:
                written: AuditEntry | None = await self._append(held, held_status, held_detail)
            except InvalidEvent:
                # Cannot happen for a checked entry; never let one block those behind it.
                logger.exception("audit entry refused by the store", extra={"action": held.action})
                written = None
            except EventStoreError:
                logger.exception(
                    "audit entry not written yet; kept for the next write",
                    extra={"request_id": held.request_id, "action": held.action},
                )
                return entry
            self._backlog.pop(0)
            if held is pending:
                entry = written
            if self._journal is not None:
                await self._journal.done(held.intent_id)
        return entry

    async def recover(self) -> int:
        """Record the intents that crashed processes left unfinished (status ``error``,
        outcome unknown); returns how many. Call once at start, before serving."""
        if self._journal is None:
            return 0
        recovered = 0
        for path, intents in self._journal.orphans():
            for intent in intents:
                await self._store.append(
                    _event(
                        actor=str(intent.get("actor") or "unknown"),
                        request_id=str(intent.get("requestId", "")),
                        action=str(intent.get("action", "")),
                        target=stored_target(str(intent.get("target", ""))),
                        status=AuditStatus.ERROR,
                        hashed=str(intent.get("payloadHash", "")),
                        detail=UNKNOWN_OUTCOME,
                    )
                )
                recovered += 1
            self._journal.discard(path)
        if recovered:
            logger.warning("recorded unfinished audited mutations", extra={"count": recovered})
        return recovered

    async def _append(self, pending: PendingEntry, status: AuditStatus, detail: str) -> AuditEntry:
        event = await self._store.append(
            _event(
                actor=pending.actor,
                request_id=pending.request_id,
                action=pending.action,
                target=pending.target,
                status=status,
                hashed=payload_hash(pending.body),
                detail=_storable(detail),
            )
        )
        return AuditEntry.from_event(event)

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
        64 KiB, longer text is cut); a target over 512 characters is cut (see the module
        docstring). Raises :class:`InvalidEvent` for a bad field.
        """
        _check(actor, action)
        try:
            status = AuditStatus(status)
        except ValueError:
            raise InvalidEvent(f"audit status must be 'ok' or 'error', got {status!r}") from None
        event = await self._store.append(
            _event(
                actor=actor,
                request_id=request_id,
                action=action,
                target=stored_target(target),
                status=status,
                hashed=payload_hash(body),
                detail=_storable(detail),
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


def _check(actor: str, action: str) -> None:
    if not actor or not actor.strip():
        raise InvalidEvent("audit actor must not be empty")
    if not ACTION.match(action):
        raise InvalidEvent(f"audit action must look like 'job.upsert', got {action!r}")


_HASH_SUFFIX = len("...sha256:") + 64


def stored_target(target: str) -> str:
    """``target``, or when longer than the key limit its head and the sha256 of the whole."""
    target = _storable(target)
    if len(target) <= MAX_KEY_LENGTH:
        return target
    digest = hashlib.sha256(target.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{target[: MAX_KEY_LENGTH - _HASH_SUFFIX]}...sha256:{digest}"


def _storable(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes) escaped, so it can be written."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _event(
    *,
    actor: str,
    request_id: str,
    action: str,
    target: str,
    status: AuditStatus,
    hashed: str,
    detail: str,
) -> NewEvent:
    return NewEvent(
        stream=Stream.AUDIT,
        key=target,
        type=EventType.AUDIT_RECORDED,
        data={
            "actor": actor,
            "requestId": request_id,
            "action": action,
            "target": target,
            "status": status.value,
            "payloadHash": hashed,
            "detail": detail[:MAX_DETAIL],
        },
    )

"""The write-ahead journal of audited mutations: an intent is durable before the change.

An admin mutation writes its *intent* (who, what, which target, the body's hash) here before
it takes effect and marks it done once its audit entry is stored. An intent that is never
marked done (the process died, or the audit log could not be written) is turned into an audit
entry by :meth:`AuditLog.recover <store.events.audit.AuditLog.recover>` at the next start, so
no change is ever left without its entry; a failed intent write stops the mutation before it
changes anything.

Each process appends to its own file ``intents-<pid>-<random>.jsonl`` and holds an exclusive
``flock`` on it while open: recovery reads only the files no live process holds, so several
processes may share the directory. The file is emptied whenever no intent is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

COMPACT_BYTES = 1 << 20
"""A journal with no intent in flight is emptied once it is at least this large."""


class AuditJournal:
    """One process's journal of pending audit intents in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd = -1
        self._path: Path | None = None
        self._open_intents: set[str] = set()
        self._lock = asyncio.Lock()

    def open(self) -> None:
        """Create the directory (0700) and this process's journal file (0600), locked."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"intents-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        path = self.directory / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd, self._path = fd, path

    def close(self) -> None:
        """Close and, when nothing is pending, remove this process's file."""
        if self._fd < 0:
            return
        path, pending = self._path, bool(self._open_intents)
        os.close(self._fd)
        self._fd, self._path = -1, None
        if path is not None and not pending:
            with contextlib.suppress(OSError):
                path.unlink()

    async def begin(self, intent_id: str, intent: dict[str, Any]) -> None:
        """Append ``intent`` durably (fsync); raises ``OSError`` when it cannot be written."""
        line = json.dumps({"intent": intent_id, **intent}, ensure_ascii=True) + "\n"
        async with self._lock:
            await asyncio.to_thread(self._append, line.encode(), True)
            self._open_intents.add(intent_id)

    async def done(self, intent_id: str) -> None:
        """Mark an intent whose audit entry is stored; a failure only logs (the entry exists,
        recovery would add a duplicate marked as of unknown outcome)."""
        async with self._lock:
            self._open_intents.discard(intent_id)
            try:
                if not self._open_intents and os.fstat(self._fd).st_size >= COMPACT_BYTES:
                    await asyncio.to_thread(os.ftruncate, self._fd, 0)
                else:
                    line = json.dumps({"done": intent_id}) + "\n"
                    await asyncio.to_thread(self._append, line.encode(), True)
            except OSError:
                logger.exception("audit journal: could not mark an intent done")

    def _append(self, data: bytes, sync: bool) -> None:
        if self._fd < 0:
            raise OSError("the audit journal is not open")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        if sync:
            os.fsync(self._fd)

    def orphans(self) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
        """The intents never marked done in journals no live process holds, per file (the
        caller records them, then removes the file with :meth:`discard`)."""
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("intents-*.jsonl")):
            if path == self._path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live process owns it
                yield path, _pending(path)
            finally:
                os.close(fd)

    @staticmethod
    def discard(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()


def _pending(path: Path) -> list[dict[str, Any]]:
    intents: dict[str, dict[str, Any]] = {}
    with path.open("rb") as lines:
        for raw in lines:
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # a line cut by a crash: its intent's write never returned
            if not isinstance(line, dict):
                continue
            if "done" in line:
                intents.pop(str(line["done"]), None)
            elif "intent" in line:
                intents[str(line["intent"])] = line
    return list(intents.values())

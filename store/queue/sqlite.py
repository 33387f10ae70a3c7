"""The durable task queue on the embedded SQLite database.

Implements :class:`store.queue.protocol.TaskQueue`; the semantics live in that protocol's
docstrings. Every operation is one short transaction run in one hop on the database's
writer (or reader) thread (see :mod:`store.db.sqlite`), and batches travel as one JSON
array parameter read with ``json_each``, so that a claim or a completion of fifty tasks
costs a handful of statements and no per-row round trips.

Wake-ups: an enqueue, replay, release or resume sets an :class:`asyncio.Event` that
:meth:`SqliteTaskQueue.wait_for_work` waits on, so workers in this process start at once;
workers in other processes sharing the file find new work on their next poll.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from store.db.sqlite import SqliteDatabase
from store.errors import InvalidTask, TaskNotFound, TaskNotWaiting
from store.queue import _sqlite_rows as rows
from store.queue._sqlite_admin import q
from store.queue._sqlite_ops import SqliteOperatorActions
from store.queue.fencing import SETTLING, classify, late_note
from store.queue.models import (
    EnqueueOutcome,
    EnqueueResult,
    Failure,
    KeyMode,
    LateOutcome,
    Lease,
    NewTask,
    Task,
    WorkerInfo,
    WorkerRecord,
)

logger = logging.getLogger(__name__)

__all__ = ["SqliteTaskQueue"]

_MICROSECOND = timedelta(microseconds=1)


class SqliteTaskQueue(SqliteOperatorActions):
    """:class:`~store.queue.protocol.TaskQueue` on SQLite.

    ``key_retention`` is how long a completed keyed task keeps its key for ``dedupe``;
    after that an enqueue with the key creates a new task even before :meth:`purge_done`
    removed the old one.
    """

    def __init__(self, db: SqliteDatabase, *, key_retention: timedelta = timedelta(days=7)) -> None:
        super().__init__(db)
        self._key_retention_us = key_retention // _MICROSECOND
        self._rng = random.Random()

    async def close(self) -> None:
        """Nothing to release: the database belongs to the caller."""

    # --- producing -----------------------------------------------------------------------

    async def enqueue(self, task: NewTask) -> EnqueueResult:
        return (await self.enqueue_many([task]))[0]

    async def enqueue_many(self, tasks: Sequence[NewTask]) -> list[EnqueueResult]:
        if not tasks:
            return []
        for task in tasks:
            if not isinstance(task, NewTask):
                raise InvalidTask(f"expected a NewTask, got {type(task).__name__}")
        now = rows.now_us()
        batch = list(tasks)

        def run(conn: sqlite3.Connection) -> list[EnqueueResult]:
            names = sorted({task.queue for task in batch})
            conn.execute(q("ensure_queues"), {"names": rows.to_json(names)})
            results: list[EnqueueResult] = []
            keyless: list[NewTask] = []
            for task in batch:
                if task.key is None:
                    keyless.append(task)
                    continue
                # Insert the keyless run first so that ids follow input order.
                results.extend(_insert(conn, keyless, now))
                keyless = []
                results.append(self._enqueue_keyed(conn, task, now))
            results.extend(_insert(conn, keyless, now))
            return results

        results = await self._db.write(run)
        self._wake()
        return results

    def _enqueue_keyed(self, conn: sqlite3.Connection, task: NewTask, now: int) -> EnqueueResult:
        existing = conn.execute(q("task_by_key"), {"key": task.key}).fetchone()
        if existing is not None:
            retained = (
                existing["state"] != "done" or existing["done_at"] >= now - self._key_retention_us
            )
            if retained and task.key_mode is KeyMode.DEDUPE:
                return EnqueueResult(
                    task=rows.task_from_row(existing, now), outcome=EnqueueOutcome.DEDUPLICATED
                )
            if retained and existing["state"] == "waiting":
                params = rows.new_task_json(task, now)
                params.update(
                    id=existing["id"],
                    now=now,
                    preserve_run_at=task.key_mode is KeyMode.PRESERVE_RUN_AT,
                )
                replaced = conn.execute(q("replace_waiting"), params).fetchone()
                return EnqueueResult(
                    task=rows.task_from_row(replaced, now), outcome=EnqueueOutcome.REPLACED
                )
            # Running, dead, done (or a key past retention): the old task keeps running
            # or stays for inspection, and the key moves to a new task.
            conn.execute(q("clear_key"), {"id": existing["id"], "now": now})
        return _insert(conn, [task], now)[0]

    # --- consuming -----------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        limit: int,
        *,
        lease: timedelta,
        queues: Sequence[str] | None = None,
    ) -> list[Task]:
        if limit <= 0:
            return []
        now = rows.now_us()
        params: dict[str, Any] = {
            "now": now,
            "worker": worker_id,
            "expires": now + lease // _MICROSECOND,
            "queues": None if queues is None else rows.to_json(list(queues)),
        }

        def run(conn: sqlite3.Connection) -> list[Task]:
            claimed: list[Task] = []
            candidates = conn.execute(q("claimable_queues"), params).fetchall()
            for candidate in self._weighted_order(candidates):
                room = limit - len(claimed)
                cap = candidate["concurrency_limit"]
                if cap is not None:
                    room = min(room, cap - candidate["running"])
                if room <= 0:
                    continue
                taken = conn.execute(
                    q("claim_from_queue"), {**params, "queue": candidate["name"], "limit": room}
                ).fetchall()
                batch = [rows.task_from_row(row, now) for row in taken]
                batch.sort(key=lambda task: (task.priority, task.run_at, task.id))
                claimed.extend(batch)
                if len(claimed) >= limit:
                    break
            return claimed

        return await self._db.write(run)

    def _weighted_order(self, candidates: Iterable[sqlite3.Row]) -> list[sqlite3.Row]:
        """Candidates in weighted random order (Efraimidis-Spirakis keys): a queue of
        weight 3 comes first about three times as often as one of weight 1."""
        keyed = [
            (self._rng.random() ** (1.0 / max(int(row["weight"]), 1)), row) for row in candidates
        ]
        keyed.sort(key=lambda pair: pair[0], reverse=True)
        return [row for _, row in keyed]

    async def complete(self, worker_id: str, task_ids: Sequence[int]) -> int:
        if not task_ids:
            return 0
        params = {"ids": rows.to_json(list(task_ids)), "worker": worker_id, "now": rows.now_us()}

        def run(conn: sqlite3.Connection) -> int:
            deleted = conn.execute(q("delete_completed"), params).fetchall()
            done = conn.execute(q("mark_done"), params).fetchall()
            return _count(conn, "count_completed", [*deleted, *done])

        return await self._db.write(run)

    async def complete_fenced(
        self, worker_id: str, leases: Sequence[Lease]
    ) -> dict[int, LateOutcome]:
        if not leases:
            return {}
        attempt = {lease.task_id: lease.attempt for lease in leases}
        now = rows.now_us()

        def run(conn: sqlite3.Connection) -> dict[int, LateOutcome]:
            found = conn.execute(q("fenced_lookup"), {"ids": rows.to_json(list(attempt))})
            outcomes = dict.fromkeys(attempt, LateOutcome.FINISHED)
            settled: list[sqlite3.Row] = []
            notes: dict[str, str] = {}
            for row in found.fetchall():
                tid = int(row["id"])
                outcome = classify(
                    worker_id,
                    attempt[tid],
                    state=str(row["state"]),
                    owner=row["lease_owner"],
                    attempts=int(row["attempts"]),
                    last_error=row["last_error"],
                )
                outcomes[tid] = outcome
                if outcome in SETTLING:
                    settled.append(row)
                if outcome in SETTLING and outcome is not LateOutcome.WRITTEN:
                    notes[str(tid)] = late_note(worker_id, attempt[tid], outcome)
            ids = rows.to_json([int(row["id"]) for row in settled])
            conn.execute(q("delete_settled"), {"ids": ids})
            conn.execute(q("mark_settled"), {"ids": ids, "now": now, "notes": rows.to_json(notes)})
            _count(conn, "count_completed", settled)
            return outcomes

        return await self._db.write(run)

    async def fail(self, worker_id: str, failures: Sequence[Failure]) -> int:
        if not failures:
            return 0
        encoded = rows.to_json(
            [
                {
                    "id": failure.task_id,
                    "error": failure.error,
                    "retry_at": None if failure.retry_at is None else rows.to_us(failure.retry_at),
                    "attempt": failure.attempt,
                }
                for failure in failures
            ]
        )
        params = {"failures": encoded, "worker": worker_id, "now": rows.now_us()}

        def run(conn: sqlite3.Connection) -> int:
            return _count(conn, "count_failed", conn.execute(q("fail_tasks"), params).fetchall())

        failed = await self._db.write(run)
        if failed and any(failure.retry_at is not None for failure in failures):
            self._wake()
        return failed

    async def release(self, worker_id: str, task_ids: Sequence[int]) -> int:
        if not task_ids:
            return 0
        params = {"ids": rows.to_json(list(task_ids)), "worker": worker_id, "now": rows.now_us()}
        released = await self._db.write(
            lambda conn: conn.execute(q("release_tasks"), params).rowcount
        )
        if released:
            self._wake()
        return released

    async def heartbeat(self, worker_id: str, lease: timedelta) -> int:
        now = rows.now_us()
        params = {"worker": worker_id, "now": now, "expires": now + lease // _MICROSECOND}

        def run(conn: sqlite3.Connection) -> int:
            conn.execute(q("touch_worker"), params)
            return conn.execute(q("renew_leases"), params).rowcount

        return await self._db.write(run)

    async def reclaim_expired(self) -> int:
        params = {"now": rows.now_us()}
        touched = await self._db.write(
            lambda conn: conn.execute(q("reclaim_expired"), params).fetchall()
        )
        return self._reclaimed(touched, reason="lease expired")

    def _reclaimed(self, touched: Iterable[sqlite3.Row], *, reason: str, **extra: Any) -> int:
        states = Counter(row["state"] for row in touched)
        count = sum(states.values())
        if count:
            logger.warning(
                "running tasks reclaimed",
                extra={
                    "reason": reason,
                    "requeued": states["waiting"],
                    "dead_lettered": states["dead"],
                    **extra,
                },
            )
        if states["waiting"]:
            self._wake()
        return count

    async def wait_for_work(self, timeout: float) -> None:  # noqa: ASYNC109 (the contract)
        # The event stays set until a waiter consumes it, so a wake-up that arrives
        # between a worker's empty claim and this call is not lost.
        if not self._work.is_set():
            try:
                await asyncio.wait_for(self._work.wait(), timeout)
            except TimeoutError:
                return
        self._work.clear()

    # --- tasks -------------------------------------------------------------------------------

    async def cancel(self, task_id: int) -> Task:
        now = rows.now_us()

        def run(conn: sqlite3.Connection) -> tuple[sqlite3.Row | None, sqlite3.Row | None]:
            deleted = conn.execute(q("cancel_waiting"), {"id": task_id}).fetchone()
            if deleted is not None:
                return deleted, None
            return None, conn.execute(q("get_task"), {"id": task_id}).fetchone()

        deleted, found = await self._db.write(run)
        if deleted is not None:
            return rows.task_from_row(deleted, now)
        if found is None:
            raise TaskNotFound(f"no task with id {task_id}")
        raise TaskNotWaiting(f"task {task_id} is {found['state']}, not waiting")

    async def purge_done(self, older_than: datetime) -> int:
        params = {"before": rows.to_us(older_than)}
        return await self._db.write(lambda conn: conn.execute(q("purge_done"), params).rowcount)

    async def purge_expired_keys(self) -> int:
        params = {"before": rows.now_us() - self._key_retention_us}
        return await self._db.write(lambda conn: conn.execute(q("purge_done"), params).rowcount)

    # --- workers -----------------------------------------------------------------------------

    async def register_worker(self, info: WorkerInfo) -> None:
        params = rows.worker_params(info, rows.now_us())
        await self._db.write(lambda conn: conn.execute(q("register_worker"), params))
        logger.info("worker registered", extra={"worker_id": info.worker_id})

    async def deregister_worker(self, worker_id: str) -> None:
        params = {"worker": worker_id, "now": rows.now_us()}

        def run(conn: sqlite3.Connection) -> int:
            conn.execute(q("delete_worker"), params)
            return conn.execute(q("release_worker_tasks"), params).rowcount

        released = await self._db.write(run)
        if released:
            self._wake()
        logger.info("worker deregistered", extra={"worker_id": worker_id, "released": released})

    async def list_workers(self) -> list[WorkerRecord]:
        found = await self._db.read(lambda conn: conn.execute(q("list_workers")).fetchall())
        return [rows.worker_from_row(row) for row in found]

    async def sweep_stale_workers(self, older_than: timedelta) -> list[str]:
        now = rows.now_us()
        cutoff = now - older_than // _MICROSECOND

        def run(conn: sqlite3.Connection) -> tuple[list[str], list[sqlite3.Row]]:
            stale = conn.execute(q("delete_stale_workers"), {"cutoff": cutoff}).fetchall()
            gone = sorted(str(row["worker_id"]) for row in stale)
            if not gone:
                return [], []
            owned = {"owners": rows.to_json(gone), "now": now}
            return gone, conn.execute(q("reclaim_owned"), owned).fetchall()

        gone, touched = await self._db.write(run)
        if gone:
            logger.warning("stale workers removed", extra={"worker_ids": gone})
        self._reclaimed(touched, reason="worker stale", worker_ids=gone)
        return gone


def _insert(conn: sqlite3.Connection, tasks: Sequence[NewTask], now: int) -> list[EnqueueResult]:
    if not tasks:
        return []
    batch = rows.to_json([rows.new_task_json(task, now) for task in tasks])
    inserted = conn.execute(q("insert_tasks"), {"tasks": batch, "now": now}).fetchall()
    return [
        EnqueueResult(task=rows.task_from_row(row, now), outcome=EnqueueOutcome.CREATED)
        for row in sorted(inserted, key=lambda row: int(row["id"]))
    ]


def _count(conn: sqlite3.Connection, query: str, touched: Iterable[sqlite3.Row]) -> int:
    """Add the touched rows to their queues' cumulative counter; return how many."""
    counts = Counter(str(row["queue"]) for row in touched)
    if counts:
        conn.execute(q(query), {"counts": rows.to_json(counts)})
    return sum(counts.values())

"""Enqueue on the caller's own PostgreSQL connection, inside the caller's transaction.

The reason to keep a queue in the application's database: the tasks an operation creates
commit or roll back with the operation's own rows. :func:`enqueue_in_transaction` runs the
queue's ``enqueue`` statement (the one :class:`~store.queue.postgres.PostgresTaskQueue`
runs) on an asyncpg connection the caller owns, so

- a rolled-back transaction leaves no task (and no key taken over);
- a committed one makes the tasks claimable at the commit, and the ``NOTIFY`` the
  statement issues is delivered then, waking idle workers of every process;
- while the transaction is open the tasks are invisible to every worker.

The caller's connection may have its own json codecs: payloads and retry policies are sent
as text, and JSON columns that come back as text are decoded here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from store.db.postgres_errors import translate_errors
from store.queue import _pg_rows as rows
from store.queue.models import EnqueueResult, NewTask
from store.sqlfiles import queries

__all__ = ["enqueue_in_transaction"]

_JSON_COLUMNS = ("payload", "retry")


async def enqueue_in_transaction(
    connection: Any,
    tasks: Sequence[NewTask],
    *,
    key_retention: timedelta = timedelta(days=7),
) -> list[EnqueueResult]:
    """Enqueue ``tasks`` on ``connection`` (an ``asyncpg.Connection``, usually inside
    ``async with connection.transaction():``) with the semantics of
    :meth:`TaskQueue.enqueue_many <store.queue.protocol.TaskQueue.enqueue_many>`.

    The results describe the tasks as the transaction sees them; they exist for everyone
    else only once it commits. Driver errors are translated as everywhere in the store
    (:class:`~store.errors.StoreUnavailable`, :class:`~store.errors.StoreError`); the
    caller's transaction is then aborted, as with any failed statement.
    """
    batch = list(tasks)
    if not batch:
        return []
    sql = queries("postgres", "queue")["enqueue"]
    with translate_errors("the caller's connection"):
        found = await connection.fetch(sql, *rows.enqueue_args(batch, key_retention))
    return rows.enqueue_results(batch, [_decoded(row) for row in found])


def _decoded(row: Any) -> dict[str | int, Any]:
    # A connection without our codecs returns json/jsonb as text (asyncpg's default).
    values: dict[str | int, Any] = dict(row.items())
    for column in _JSON_COLUMNS:
        if isinstance(values[column], str | bytes):
            values[column] = json.loads(values[column])
    return values

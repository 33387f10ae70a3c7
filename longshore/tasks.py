"""Tasks from library arguments: payload encoding, priorities, retry presets, and the
backfill helpers' defaults.

A payload may be a mapping, a pydantic model or a dataclass (anything pydantic can turn
into JSON, as long as the result is a JSON object); it is encoded once, here, and the store
validates the result (:class:`~store.errors.InvalidTask` names the rule it breaks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic_core import PydanticSerializationError, to_jsonable_python

from store.errors import InvalidTask
from store.queue.models import DEFAULT_QUEUE, KeyMode, NewTask, Priority
from store.queue.retry import RetryPolicy

__all__ = ["BULK", "CRITICAL", "FAST", "HandlerRef", "Preset", "encode_payload", "new_task"]


class HandlerRef(Protocol):
    """Anything naming a handler: a registered typed handler has a ``name``."""

    @property
    def name(self) -> str: ...


@dataclass(frozen=True, kw_only=True)
class Preset:
    """Defaults of one backfill helper (``enqueue_fast`` and friends)."""

    queue: str
    priority: Priority
    retry: str


FAST = Preset(queue="fast", priority=Priority.FAST_DEFAULT, retry="fast")
"""``enqueue_fast``: the ``fast`` queue, priority ``fast_default``, the ``fast`` retries."""
BULK = Preset(queue="bulk", priority=Priority.BULK_DEFAULT, retry="conservative")
"""``enqueue_bulk``: the ``bulk`` queue, priority ``bulk_default``, ``conservative`` retries."""
CRITICAL = Preset(queue="fast", priority=Priority.FAST_HIGH, retry="aggressive")
"""``enqueue_critical``: the ``fast`` queue, priority ``fast_high``, ``aggressive`` retries."""


def encode_payload(payload: Any) -> dict[str, Any]:
    """The JSON object a payload is stored as; raises :class:`InvalidTask`."""
    if payload is None:
        return {}
    if isinstance(payload, Mapping) and all(isinstance(key, str) for key in payload):
        encoded: Any = dict(payload)
    else:
        try:
            encoded = to_jsonable_python(payload)
        except PydanticSerializationError as exc:
            raise InvalidTask(f"payload cannot be encoded as JSON: {exc}") from None
    if not isinstance(encoded, dict):
        raise InvalidTask(f"payload must encode to a JSON object, got {type(payload).__name__}")
    return encoded


def _retry(retry: str | RetryPolicy | None, max_attempts: int | None) -> RetryPolicy:
    if isinstance(retry, RetryPolicy):
        if max_attempts is None:
            return retry
        return RetryPolicy(
            max_attempts=max_attempts,
            base_delay=retry.base_delay,
            factor=retry.factor,
            max_delay=retry.max_delay,
            jitter=retry.jitter,
        )
    return RetryPolicy.preset(retry or "default", max_attempts=max_attempts)


def new_task(
    handler: str | HandlerRef,
    payload: Any = None,
    *,
    queue: str = DEFAULT_QUEUE,
    priority: int | str = Priority.FAST_DEFAULT,
    run_at: datetime | timedelta | None = None,
    key: str | None = None,
    key_mode: KeyMode | str = KeyMode.REPLACE,
    max_attempts: int | None = None,
    retry: str | RetryPolicy | None = None,
) -> NewTask:
    """A validated task, as :meth:`longshore.Client.enqueue` takes its arguments.

    ``handler`` is a name or a registered handler; ``priority`` a number (lower runs
    first) or a level name (``emergency``, ``fast_high``, ``fast_default``, ``bulk_default``,
    ``bulk_low``, ``bulk_lowest``); ``run_at`` a time or a delay from now; ``retry`` a
    preset name (``default``, ``fast``, ``aggressive``, ``conservative``) or a
    :class:`~store.queue.retry.RetryPolicy`, its attempts overridden by ``max_attempts``.
    Raises :class:`~store.errors.InvalidTask` naming what is wrong.
    """
    name = handler if isinstance(handler, str) else handler.name
    when = datetime.now(UTC) + run_at if isinstance(run_at, timedelta) else run_at
    return NewTask(
        handler=name,
        payload=encode_payload(payload),
        queue=queue,
        priority=Priority.parse(priority),
        run_at=when,
        key=key,
        key_mode=key_mode if isinstance(key_mode, KeyMode) else KeyMode.parse(key_mode),
        retry=_retry(retry, max_attempts),
    )

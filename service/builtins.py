"""Built-in diagnostic handlers for smoke tests and benchmarks.

- ``builtin.noop``: does nothing.
- ``builtin.sleep`` (``{"seconds": s}``): sleeps ``s`` seconds (0-86400).
- ``builtin.fail`` (``{"message": m, "permanent": bool}``): fails with ``m``; permanently
  (straight to the dead-letter queue) when ``permanent`` is true.
"""

from __future__ import annotations

import asyncio
from typing import Any

from service.errors import DiagnosticFailure
from service.worker import HandlerRegistry
from store.errors import PermanentFailure
from store.queue.handlers import TaskContext

MAX_SLEEP_SECONDS = 86400.0


async def noop(context: TaskContext) -> None:
    return None


async def sleep(context: TaskContext) -> None:
    seconds = check_sleep_payload(context.task.payload)
    await asyncio.sleep(seconds)


async def fail(context: TaskContext) -> None:
    message, permanent = check_fail_payload(context.task.payload)
    if permanent:
        raise PermanentFailure(message)
    raise DiagnosticFailure(message)


def check_sleep_payload(payload: dict[str, Any]) -> float:
    seconds = payload.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise PermanentFailure("builtin.sleep: 'seconds' must be a number")
    if not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise PermanentFailure(f"builtin.sleep: 'seconds' must be 0-{MAX_SLEEP_SECONDS:.0f}")
    return float(seconds)


def check_fail_payload(payload: dict[str, Any]) -> tuple[str, bool]:
    message = payload.get("message", "builtin.fail was asked to fail")
    permanent = payload.get("permanent", False)
    if not isinstance(message, str) or not isinstance(permanent, bool):
        raise PermanentFailure("builtin.fail: 'message' must be a string, 'permanent' a bool")
    return message, permanent


PAYLOAD_CHECKS = {"builtin.sleep": check_sleep_payload, "builtin.fail": check_fail_payload}


def register_builtins(registry: HandlerRegistry) -> None:
    registry.register("builtin.noop", noop)
    registry.register("builtin.sleep", sleep)
    registry.register("builtin.fail", fail)

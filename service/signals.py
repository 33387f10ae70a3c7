"""Graceful stop on SIGINT / SIGTERM, as ``longshore serve`` and ``longshore worker`` do.

The first signal sets the stop event: no new claims, running tasks may finish within the
grace period. A second one cancels the task that installed the handlers (running tasks are
then cancelled and their leases given back).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["stop_on_signals"]

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Within the block, the first SIGINT/SIGTERM sets ``stop`` and the second cancels the
    current task; the previous handling is restored on exit."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            logger.info("shutting down: no new claims, running tasks may finish")
            stop.set()
        else:
            logger.warning("second signal: cancelling running tasks now")
            main.cancel()

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)

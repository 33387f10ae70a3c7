"""Helpers of the library tests: the database URL of the backend under test, short worker
settings, and waiting for a condition."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from store.queue.retry import RetryPolicy

# Generous bound for "eventually": a broken feature never gets there, a slow machine does.
EVENTUALLY = 30.0
TINY_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, factor=1.0, max_delay=0.01, jitter=0.0)
QUICK = {"lease": timedelta(seconds=5), "poll_interval": 0.1, "shutdown_grace": 5.0}
"""Worker settings for tests: short polling, a lease a loaded machine still keeps."""


def library_url(backend: str, location: Any) -> str:
    """The URL a library user would pass for this test's database."""
    if backend == "sqlite":
        assert isinstance(location, Path)
        return f"sqlite:///{location}"
    return str(location)


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = EVENTUALLY) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)

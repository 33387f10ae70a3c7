"""How asyncpg's errors become the store's: an outage is :class:`StoreUnavailable` (nothing
was acknowledged; callers may retry), anything else a :class:`StoreError`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from store.errors import StoreError, StoreUnavailable

__all__ = ["UNAVAILABLE", "is_unavailable", "translate_errors"]

# Everything that means "the server cannot be reached or the connection is gone": socket
# errors, class 08 (connection exceptions) and the 57P0x errors raised while the server shuts
# down or starts up ("cannot connect now").
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, UNAVAILABLE):
        return True
    # A pooled connection left mid-protocol by a server that went away under it ("cannot
    # switch to state ...; another operation is in progress", seen after a restart): the
    # connection is unusable, the statement was not acknowledged, and the pool replaces it.
    if isinstance(exc, asyncpg.InternalClientError):
        return True
    # asyncpg reports a closed pool or connection with a bare InterfaceError; its other
    # InterfaceErrors are programming errors and must not pass for an outage.
    if isinstance(exc, asyncpg.InterfaceError):
        message = str(exc)
        return "closed" in message or "closing" in message
    return False


@contextmanager
def translate_errors(where: str) -> Iterator[None]:
    """Translate driver errors raised inside the block into the store's error tree."""
    try:
        yield
    except StoreError:
        raise
    except (
        OSError,
        TimeoutError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        asyncpg.PostgresError,
    ) as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(f"PostgreSQL unavailable ({where}): {exc}") from exc
        raise StoreError(f"PostgreSQL error ({where}): {exc}") from exc

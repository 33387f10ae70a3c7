"""asyncpg's errors become the store's: an outage is StoreUnavailable, the rest StoreError."""

from __future__ import annotations

import asyncpg
import pytest

from store.db.postgres_errors import translate_errors
from store.errors import StoreError, StoreUnavailable


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError("reset by peer"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.InterfaceError("connection is closed"),
        # What a pooled connection left mid-protocol by a restarted server raises.
        asyncpg.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
    ],
)
def test_an_outage_is_store_unavailable(error: Exception) -> None:
    with pytest.raises(StoreUnavailable), translate_errors("test"):
        raise error


def test_a_programming_error_is_a_store_error_not_an_outage() -> None:
    with pytest.raises(StoreError) as caught, translate_errors("test"):
        raise asyncpg.InterfaceError("the server expects 2 arguments, 1 was passed")
    assert not isinstance(caught.value, StoreUnavailable)

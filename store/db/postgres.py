"""The PostgreSQL database shared by the PostgreSQL stores: an asyncpg pool, migrations,
error translation and dedicated LISTEN connections.

asyncpg is untyped; its objects stay behind :class:`Row` and the few helpers here, and its
exceptions never leave this module untranslated (see
:func:`store.db.postgres_errors.translate_errors`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit

import asyncpg

from store.db.postgres_errors import UNAVAILABLE, is_unavailable, translate_errors
from store.errors import MigrationError, StoreUnavailable
from store.sqlfiles import migrations, queries

logger = logging.getLogger(__name__)

# Seconds to wait for a new connection: an unreachable host fails fast instead of hanging.
CONNECT_TIMEOUT = 10.0
# Seconds a statement may run before it fails as "unavailable" (and is retried by its
# caller like any outage). No statement of a queue or a store comes near it; it exists so
# that a connection left half-open by a server restart or a network fault can never hang a
# worker silently (nor, by holding its pooled connection, everything else).
STATEMENT_TIMEOUT = 60.0
# Migrations may wait for another process's migration and rewrite large tables.
MIGRATION_TIMEOUT = 3600.0

# Errors after which a single statement was rolled back whole and may simply run again.
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_STATEMENT_ATTEMPTS = 3


class _SessionState:
    """Which pooled connections hold session state, for the pool's ``reset``.

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL`` whenever a connection goes back to the pool: one more round trip for every claim
    and every completion. Queries here leave no session state (``SET LOCAL`` and transaction
    advisory locks end with their transaction, which asyncpg rolls back on release when
    still open), so only connections taken with :meth:`PostgresDatabase.session_connection`
    get the full reset. Keyed by server process id: a reused id costs one needless reset.
    """

    def __init__(self) -> None:
        self._pids: set[int] = set()

    def mark(self, connection: Any) -> None:
        self._pids.add(connection.get_server_pid())

    async def reset(self, connection: Any) -> None:
        pid = connection.get_server_pid()
        if pid in self._pids:
            self._pids.discard(pid)
            reset_query = connection.get_reset_query()
            if reset_query:
                await connection.execute(reset_query)


class Row(Protocol):
    """A result row (an ``asyncpg.Record``): columns by name or position."""

    def __getitem__(self, key: str | int, /) -> Any: ...


def describe_url(url: str) -> str:
    """``host:port/database`` of a connection URL: never the user name or password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "<invalid PostgreSQL URL>"
    database = parts.path.lstrip("/") or "postgres"
    return f"{host}:{port}/{database}"


def _scrub(text: str, url: str) -> str:
    """Remove the URL's password from a driver message, should it ever quote it."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text


def _encode_json(value: Any) -> str:
    # Callers may hand over JSON text they already encoded (payloads are validated and
    # encoded once, by NewTask); anything else is encoded here.
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


async def _init_connection(connection: Any) -> None:
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, schema="pg_catalog", encoder=_encode_json, decoder=json.loads
        )


class PostgresListener:
    """A dedicated connection LISTENing on one channel (outside the pool, which it would
    otherwise hold forever)."""

    def __init__(self, connection: Any, channel: str, on_terminated: Callable[[Any], None]) -> None:
        self._connection = connection
        self._channel = channel
        self._on_terminated = on_terminated

    @property
    def alive(self) -> bool:
        """Whether the connection is still open."""
        return not bool(self._connection.is_closed())

    async def close(self) -> None:
        """Close the connection (idempotent); errors of a dead connection are ignored."""
        # A deliberate close is not a lost connection: do not report it as one.
        self._connection.remove_termination_listener(self._on_terminated)
        if self._connection.is_closed():
            return
        try:
            await asyncio.wait_for(self._connection.close(), timeout=5)
        except (*UNAVAILABLE, asyncpg.InterfaceError, asyncpg.PostgresError):
            self._connection.terminate()


class NotificationWaiter:
    """Waits for NOTIFY on one channel, with polling as the fallback.

    The LISTEN connection is opened lazily by the first wait, re-opened (at most once a
    second) after it is lost, and while it is down a wait simply runs out its timeout.
    :meth:`poke` wakes this process's waiters directly (for its own writes). A deliberate
    :meth:`close` logs nothing, and a connection still being opened when it runs is closed
    as soon as it arrives instead of being kept (and later reported lost).
    """

    RETRY_SECONDS = 1.0

    def __init__(self, db: PostgresDatabase, channel: str, *, what: str) -> None:
        self._db = db
        self._channel = channel
        self._what = what
        self._event = asyncio.Event()
        self._listener: PostgresListener | None = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0
        self._closed = False

    def poke(self) -> None:
        """Wake waiters of this process now."""
        self._event.set()

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109
        """Return on a notification (or a poke) or after ``timeout`` seconds."""
        if not self._closed:
            await self._ensure_listener(timeout)
        if not self._event.is_set():
            try:
                await asyncio.wait_for(self._event.wait(), timeout=max(timeout, 0.0))
            except TimeoutError:
                return
        self._event.clear()

    async def close(self) -> None:
        """Close the LISTEN connection (idempotent)."""
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()

    async def _ensure_listener(self, budget: float) -> None:
        if self._listener is not None and self._listener.alive:
            return
        if time.monotonic() < self._retry_at:
            return
        async with self._lock:
            if self._listener is not None and self._listener.alive:
                return
            self._retry_at = time.monotonic() + self.RETRY_SECONDS
            try:
                listener = await asyncio.wait_for(
                    self._db.listen(self._channel, self._on_notify, self._on_lost),
                    timeout=max(min(budget, 5.0), 0.1),
                )
            except (StoreUnavailable, TimeoutError) as exc:
                self._listener = None
                logger.warning(
                    f"{self._what} LISTEN connection unavailable, polling instead",
                    extra={"database": self._db.display_name, "error": str(exc)},
                )
                return
            if self._closed:
                await listener.close()
                return
            self._listener = listener
            # Notifications sent while nobody listened are lost: look once.
            self._event.set()

    def _on_notify(self, _payload: str) -> None:
        self._event.set()

    def _on_lost(self) -> None:
        self._listener = None
        if self._closed:
            return
        logger.warning(
            f"{self._what} LISTEN connection lost", extra={"database": self._db.display_name}
        )
        # Wake waiters now so that they re-open the connection instead of sleeping blind.
        self._event.set()


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database, shared by the stores.

    Create it with :meth:`open`; bring the schema up to date with :meth:`migrate`. json and
    jsonb parameters take JSON text as is, or any other value to encode; results decode to
    Python objects.
    """

    def __init__(self, pool: Any, url: str, session_state: _SessionState) -> None:
        self._pool = pool
        self._url = url
        self._session_state = session_state
        self.display_name = describe_url(url)

    @classmethod
    async def open(cls, url: str, *, min_size: int = 2, max_size: int = 10) -> PostgresDatabase:
        """Connect a pool to ``url``.

        Raises :class:`StoreUnavailable` (naming host and port, never the password) if the
        server cannot be reached or refuses the connection.
        """
        display = describe_url(url)
        session_state = _SessionState()
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=CONNECT_TIMEOUT,
                command_timeout=STATEMENT_TIMEOUT,
                init=_init_connection,
                reset=session_state.reset,
                # JIT compilation only adds latency to the short queries of a queue.
                server_settings={"application_name": "longshore", "jit": "off"},
            )
        except (*UNAVAILABLE, asyncpg.InterfaceError, asyncpg.PostgresError, ValueError) as exc:
            reason = _scrub(str(exc) or type(exc).__name__, url).splitlines()[0]
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {display}: {reason}") from None
        logger.info("postgres pool opened", extra={"database": display, "max_size": max_size})
        return cls(pool, url, session_state)

    async def close(self) -> None:
        """Close every pooled connection (waiting briefly for ones in use)."""
        try:
            await asyncio.wait_for(self._pool.close(), timeout=10)
        except (*UNAVAILABLE, asyncpg.InterfaceError, asyncpg.PostgresError):
            self._pool.terminate()

    # --- queries ------------------------------------------------------------------------

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection for several statements (e.g. a transaction); driver errors
        raised in the block are translated."""
        with translate_errors(self.display_name):
            async with self._pool.acquire() as connection:
                yield connection

    @asynccontextmanager
    async def session_connection(self) -> AsyncIterator[Any]:
        """A pooled connection whose session state (an advisory lock, a setting, a temporary
        table) is reset in full before it goes back to the pool; :meth:`connection` and the
        one-statement methods leave none, so theirs is not."""
        async with self.connection() as connection:
            self._session_state.mark(connection)
            yield connection

    async def _call(self, method: str, sql: str, args: tuple[Any, ...]) -> Any:
        # One autocommit statement that lost a deadlock or serialisation race was rolled
        # back whole, so running it again is safe (e.g. complete() racing reclaim_expired()
        # over the same rows, each locking them in its own index order).
        with translate_errors(self.display_name):
            for attempt in range(1, _STATEMENT_ATTEMPTS + 1):
                try:
                    return await getattr(self._pool, method)(sql, *args)
                except _RETRYABLE as exc:
                    if attempt == _STATEMENT_ATTEMPTS:
                        raise
                    logger.warning(
                        "statement retried", extra={"attempt": attempt, "error": str(exc)}
                    )
            raise AssertionError("unreachable")

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Run ``sql`` and return every row."""
        rows: list[Row] = await self._call("fetch", sql, args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """Run ``sql`` and return its first row, if any."""
        row: Row | None = await self._call("fetchrow", sql, args)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """Run ``sql`` and return the first column of its first row."""
        return await self._call("fetchval", sql, args)

    async def execute(self, sql: str, *args: Any) -> None:
        """Run ``sql`` for its effect."""
        await self._call("execute", sql, args)

    async def listen(
        self,
        channel: str,
        on_notify: Callable[[str], None],
        on_lost: Callable[[], None] | None = None,
    ) -> PostgresListener:
        """Open a dedicated connection LISTENing on ``channel``.

        ``on_notify`` gets each notification's payload; ``on_lost`` is called once if the
        connection terminates (server restart, network loss).
        """

        def notified(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
            on_notify(payload)

        def terminated(_connection: Any) -> None:
            if on_lost is not None:
                on_lost()

        with translate_errors(self.display_name):
            connection = await asyncpg.connect(
                self._url,
                timeout=CONNECT_TIMEOUT,
                server_settings={"application_name": "longshore-listener"},
            )
            try:
                await connection.add_listener(channel, notified)
            except BaseException:
                connection.terminate()
                raise
            connection.add_termination_listener(terminated)
        return PostgresListener(connection, channel, terminated)

    # --- schema -------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Apply pending migrations in order; return the versions this call applied.

        Each migration runs in its own transaction under an advisory lock, so concurrent
        migrators (several service instances starting at once) apply each version once.
        """
        sql = queries("postgres", "database")
        known = migrations("postgres")
        applied_now: list[int] = []
        while True:
            async with self.session_connection() as connection, connection.transaction():
                await connection.execute(sql["migration_lock"], timeout=MIGRATION_TIMEOUT)
                await connection.execute(sql["create_migrations_table"])
                done = {row[0] for row in await connection.fetch(sql["applied_versions"])}
                if done and max(done) > len(known):
                    raise MigrationError(
                        f"database schema version {max(done)} is newer than this code "
                        f"({len(known)}); upgrade Longshore"
                    )
                pending = [m for m in known if m.version not in done]
                if not pending:
                    return applied_now
                migration = pending[0]
                try:
                    await connection.execute(migration.sql, timeout=MIGRATION_TIMEOUT)
                except asyncpg.PostgresError as exc:
                    if is_unavailable(exc):
                        raise
                    raise MigrationError(
                        f"migration {migration.version:03d}_{migration.name} failed: {exc}"
                    ) from exc
                await connection.execute(sql["record_migration"], migration.version, migration.name)
            applied_now.append(migration.version)
            logger.info(
                "migration applied",
                extra={"version": migration.version, "migration": migration.name},
            )

    async def schema_version(self) -> int:
        """The highest migration version applied (0 for an empty database)."""
        version = await self.fetchval(queries("postgres", "database")["schema_version"])
        return int(version)

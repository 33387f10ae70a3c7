"""uvicorn's h11 protocol with a deadline on request headers (the admin listener's
protection against clients that trickle them, before anyone is authenticated).

uvicorn bounds the idle time between requests (``timeout_keep_alive``) but not the time a
client takes to send a request's headers: a byte every few seconds keeps a connection, and
its buffers, forever. :class:`HeaderDeadlineH11Protocol` closes a connection whose request
line and headers are not complete :data:`HEADER_TIMEOUT_SECONDS` after the connection opened
or the previous response ended. The body has its own deadline, in
:class:`admin.middleware.AdminMiddleware`, and is read only after authentication.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

HEADER_TIMEOUT_SECONDS = 10.0
"""How long a client may take to send a request line and its headers."""


class HeaderDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that closes connections whose headers come too slowly."""

    header_timeout = HEADER_TIMEOUT_SECONDS
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and self._header_deadline:
            # A request's headers are complete: the app has it now.
            self._header_deadline.cancel()
            self._header_deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.cycle is None or self.cycle.response_complete:
            logger.info("closed a connection whose request headers came too slowly")
            self.transport.close()

"""The connections to the Docker engine, and how blocking SDK calls leave the event loop.

The docker SDK is blocking. Short calls go through ``asyncio.to_thread``
(:meth:`DockerClients.call`); **long blocking reads** (the output stream, ``wait``, a build,
an artifacts tar) run on their own daemon threads (:func:`in_thread`), so a few long jobs
cannot starve ``asyncio.to_thread``'s small shared pool.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

# The docker SDK and requests ship no type information: their objects are ``Any`` in the
# modules of this package, the only ones that touch them.
import docker  # type: ignore[import-untyped, unused-ignore]
import requests.exceptions  # type: ignore[import-untyped, unused-ignore]

from jobrunner.errors import EngineUnavailable

T = TypeVar("T")

ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)
"""What the SDK raises when the engine fails (translated to ``EngineUnavailable``)."""


class DockerClients:
    """The SDK clients of one Docker engine: a shared one for short calls, made on first use
    (never at import or construction), and one of its own for each streamed call.

    ``base_url`` overrides ``DOCKER_HOST`` (and the TLS settings read from the environment,
    as the docker SDK does); ``timeout`` is the socket timeout of the shared client.
    """

    def __init__(self, *, base_url: str | None, timeout: float) -> None:
        self._base_url = base_url
        self.timeout = timeout
        self._api: Any = None
        self._api_lock = threading.Lock()

    def close(self) -> None:
        """Close the shared client's connections (a new one is made on the next call)."""
        with self._api_lock:
            api, self._api = self._api, None
        if api is not None:
            close_client(api)

    def shared(self) -> Any:
        """The shared ``APIClient`` (thread-safe; blocking calls only)."""
        with self._api_lock:
            if self._api is None:
                self._api = self._new_client(self.timeout)
            return self._api

    def one_off(self, timeout: float | None) -> ClosingClient:
        """A client of its own for one streamed call (``timeout=None``: reads never time
        out), whose responses are all closed with it.

        The SDK's streams hide their response: ``build`` and ``get_archive`` generators
        abandoned half-read (an error, a cap, a deadline) would leak the connection, and
        the socket of ``attach(stream=True)`` stays open after the stream's ``close()``.
        """
        version = self.shared().api_version
        return ClosingClient(self._new_client(timeout, version))

    async def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a short blocking SDK call ``fn(api, *args, **kwargs)`` on the shared client in
        a thread; engine errors become ``EngineUnavailable`` ("failed to ``what``")."""

        def call() -> T:
            return fn(self.shared(), *args, **kwargs)

        try:
            return await asyncio.to_thread(call)
        except ENGINE_ERRORS as exc:
            raise EngineUnavailable(f"docker engine failed to {what}: {exc}") from exc

    def _new_client(self, timeout: float | None, version: str = "auto") -> Any:
        kwargs = docker.utils.kwargs_from_env()
        if self._base_url is not None:
            kwargs["base_url"] = self._base_url
        base_url = str(kwargs.get("base_url") or docker.constants.DEFAULT_UNIX_SOCKET)
        scheme, _, socket_path = base_url.partition("://")
        if scheme in ("unix", "http+unix") and not Path("/" + socket_path.lstrip("/")).exists():
            # Said plainly, and before the SDK leaks the socket of a failed connect.
            raise EngineUnavailable(f"no Docker engine socket at {base_url}")
        return docker.APIClient(version=version, timeout=timeout, **kwargs)


class ClosingClient:
    """An ``APIClient`` that closes every response it received when it is closed."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self._responses: list[Any] = []
        api.hooks["response"].append(self._keep)

    def _keep(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._responses.append(response)

    def close(self) -> None:
        for response in self._responses:
            with suppress(Exception):  # best effort: it may be half gone already
                response.close()
        self._responses.clear()
        close_client(self.api)


def close_client(api: Any) -> None:
    """Close a client's connections. ``APIClient.close`` misses the SDK's unix-socket
    adapter, which keeps its connection pools in ``pools`` rather than a pool manager."""
    for adapter in list(api.adapters.values()):
        pools = getattr(adapter, "pools", None)
        if pools is not None:
            pools.clear()  # disposing of each pool closes its idle connections
    api.close()


def in_thread(fn: Callable[[], T], *, name: str) -> asyncio.Future[T]:
    """Run a long blocking ``fn`` on its own daemon thread; its result as a future."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn()
        except BaseException as exc:
            error = exc
        with suppress(RuntimeError):  # the loop is gone: nobody is waiting any more
            loop.call_soon_threadsafe(settle, result, error)

    # Retrieve the exception of a future nobody awaited, so it is not reported as lost.
    future.add_done_callback(lambda f: None if f.cancelled() else f.exception())
    threading.Thread(target=target, name=name, daemon=True).start()
    return future

"""``ContainerEngine`` on the Docker engine, through the docker SDK's low-level ``APIClient``.

Choices a reader might not expect:

- **Builds** stream ``APIClient.build`` (custom context = the verified tar as is, ``pull=False``,
  ``rm``/``forcerm``, ``RUN`` steps on network ``none``) and keep only the log's tail.
- **Runs** use ``create`` + ``attach`` + ``start``, never ``containers.run`` (which pulls).
  Attaching *before* starting gets every byte, with stdout and stderr merged in the order the
  daemon forwards them, without depending on the log driver; a slow reader back-pressures
  the job's pipes instead of buffering without bound.
- **Deadlines are ours**: ``wait(timeout=...)`` is only a socket timeout, so the timeout,
  cancellation and output-limit checks race the exit in the event loop; losing means
  ``stop`` (SIGTERM, grace period, SIGKILL) and finally a forced removal.
- **Long blocking reads** (the output stream, ``wait``, a build) run on their own daemon
  threads, so a few long jobs cannot starve ``asyncio.to_thread``'s small shared pool; short
  calls go through ``asyncio.to_thread``.
- **Artifacts on a read-only root**: a tmpfs would be size-capped, but its content vanishes
  when the container stops (and ``get_archive`` of a stopped container then sees an empty
  directory — tried). So ``artifacts_path`` is an anonymous volume, removed with the
  container; it survives the exit until ``get_archive`` reads it. Its size is capped only
  when collected (count, per file, total, and the raw tar read), not while written.
- **An untouched artifacts directory is not read back.** ``get_archive`` costs ~55 ms even
  for an empty directory (the daemon re-executes itself to make the tar); its ``HEAD`` form
  (the directory's stat only) ~4 ms. The volume is a fresh directory at ``create``, filled
  then with the image's own content at that path, if any; anything the job adds, removes or
  renames directly in it changes its mtime, and anything deeper needs a subdirectory made
  there first. So when the image leaves that directory empty (checked once per image id
  with one ``get_archive`` of a created, unstarted container) and the stat taken before
  ``start`` equals the stat after the exit (name, size, mode, mtime with sub-second digits,
  i.e. a file system with fine timestamps), the directory is still empty: nothing to
  collect. Any difference, an image not named by its id, or a failed stat means the full
  ``get_archive``. The job can only hide its own artifacts this way (by resetting the
  mtime), never reach anything else; the container is unchanged (same volume, same
  read-only root, no host mounts).
- **No log driver** (``none``): ``attach`` already has every byte; json-file measured ~2 MB/s
  for a chatty job here (vs ~35 MB/s without) and delayed ``stop`` by seconds while draining.
- ``init=True``: tini as PID 1 forwards SIGTERM (a bare ``sleep`` as PID 1 ignores it) and
  reaps zombies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import tarfile
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import closing, suppress
from pathlib import Path
from typing import Any, TypeVar

# The docker SDK and requests ship no type information: their objects are ``Any`` here, the
# only module that touches them.
import docker  # type: ignore[import-untyped, unused-ignore]
import requests.exceptions  # type: ignore[import-untyped, unused-ignore]
from docker.types import LogConfig, Mount  # type: ignore[import-untyped, unused-ignore]

from jobrunner.artifact_collection import collect_artifacts
from jobrunner.engine import (
    LABEL_RUN,
    LABEL_SOURCE_DIGEST,
    BuildResult,
    CollectedArtifact,
    OutputCallback,
    RunResult,
    RunSpec,
    RunStatus,
)
from jobrunner.errors import BuildFailed, EngineUnavailable
from jobrunner.output import OutputBuffer
from store.artifacts import ArtifactStore

logger = logging.getLogger(__name__)

T = TypeVar("T")

_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)
_WAIT_POLL_SECONDS = 30.0  # socket timeout of one ``wait`` call; the loop re-issues it
_PENDING_CHUNKS = 64  # output chunks in flight between the reader thread and the loop
_DRAIN_SECONDS = 10.0  # how long to wait for the rest of the output after the exit
_STAT_HEADER = "X-Docker-Container-Path-Stat"  # the stat of a ``HEAD .../archive``
_EMPTY_TAR_BYTES = 64 * 1024  # an empty directory's tar is ~1.5 KiB; past this: not empty


class DockerEngine:
    """Builds and runs job containers on one Docker engine.

    ``base_url`` overrides ``DOCKER_HOST`` (and the TLS settings read from the environment,
    as the docker SDK does). The client is created on first use, never at import or
    construction. Artifacts are collected into ``artifact_store``.
    """

    def __init__(
        self,
        artifact_store: ArtifactStore,
        *,
        base_url: str | None = None,
        stop_grace_seconds: float = 5.0,
        tmp_size_mb: int = 64,
        build_log_bytes: int = 64 * 1024,
        build_timeout_seconds: float = 1800.0,
        client_timeout_seconds: float = 60.0,
    ) -> None:
        self._store = artifact_store
        self._base_url = base_url
        self._grace = stop_grace_seconds
        self._tmp_size_mb = tmp_size_mb
        self._log_bytes = build_log_bytes
        self._build_timeout = build_timeout_seconds
        self._client_timeout = client_timeout_seconds
        self._api: Any = None
        self._api_lock = threading.Lock()
        self._digest_locks: dict[str, asyncio.Lock] = {}
        self._images: dict[str, str] = {}  # source digest -> image id seen with that label
        self._cleanups: set[asyncio.Future[None]] = set()
        # (image id, artifacts path) -> whether a new container's volume there starts empty
        self._empty_artifacts: dict[tuple[str, str], bool] = {}

    def close(self) -> None:
        """Close the client's connections (the engine can be used again afterwards)."""
        with self._api_lock:
            api, self._api = self._api, None
        if api is not None:
            _close_client(api)

    # --- plumbing ---------------------------------------------------------------------------

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

    def _client(self) -> Any:
        with self._api_lock:
            if self._api is None:
                self._api = self._new_client(self._client_timeout)
            return self._api

    def _one_off_client(self, timeout: float | None) -> _ClosingClient:
        """A client of its own for one streamed call (``timeout=None``: reads never time
        out), whose responses are all closed with it.

        The SDK's streams hide their response: ``build`` and ``get_archive`` generators
        abandoned half-read (an error, a cap, a deadline) would leak the connection, and
        the socket of ``attach(stream=True)`` stays open after the stream's ``close()``.
        """
        version = self._client().api_version
        return _ClosingClient(self._new_client(timeout, version))

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a short blocking SDK call in a thread, translating engine errors."""

        def call() -> T:
            return fn(self._client(), *args, **kwargs)

        try:
            return await asyncio.to_thread(call)
        except _ENGINE_ERRORS as exc:
            raise EngineUnavailable(f"docker engine failed to {what}: {exc}") from exc

    async def ping(self) -> None:
        await self._call("answer a ping", lambda api: api.ping())

    # --- build ------------------------------------------------------------------------------

    async def build(
        self,
        context_tar: Path,
        dockerfile: str,
        digest: str,
        labels: Mapping[str, str],
        *,
        network: str = "none",
    ) -> BuildResult:
        # Two runs of one new source in this process build once; the second finds the image.
        lock = self._digest_locks.setdefault(digest, asyncio.Lock())
        async with lock:
            # Listing by label scans every image (30 ms with ~350 images here); an image id
            # seen before is checked with one inspect (~1 ms) that it still carries the label.
            known = self._images.get(digest)
            existing = None
            if known is not None:
                existing = await self._call("inspect an image", _image_if_labelled, known, digest)
            if existing is None:
                existing = await self._call("list images", _find_image, digest)
            if existing is not None:
                self._images[digest] = existing
                return BuildResult(image_id=existing, cached=True, log="")
            all_labels = {**labels, LABEL_SOURCE_DIGEST: digest}
            started = time.monotonic()
            result = await _in_thread(
                lambda: self._build_blocking(context_tar, dockerfile, all_labels, network),
                name=f"docker-build-{digest[:12]}",
            )
            logger.info(
                "image built",
                extra={
                    "image_id": result.image_id,
                    "source_digest": digest,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
            self._images[digest] = result.image_id
            return result

    def _build_blocking(
        self, context_tar: Path, dockerfile: str, labels: dict[str, str], network: str
    ) -> BuildResult:
        log = _LogTail(self._log_bytes)
        image_id: str | None = None
        error: str | None = None
        deadline = time.monotonic() + self._build_timeout
        try:
            # ``timeout`` is the socket's: a step silent for that long ends the build.
            with (
                closing(self._one_off_client(self._build_timeout)) as one_off,
                context_tar.open("rb") as context,
            ):
                api = one_off.api
                stream = api.build(
                    fileobj=context,
                    custom_context=True,
                    dockerfile=dockerfile,
                    rm=True,
                    forcerm=True,
                    pull=False,
                    nocache=False,
                    decode=True,
                    labels=labels,
                    network_mode=network,
                )
                for item in stream:
                    if "stream" in item:
                        log.add(str(item["stream"]))
                    if "error" in item and error is None:
                        error = str(item["error"])
                        log.add(f"ERROR: {error}\n")
                    aux = item.get("aux")
                    if isinstance(aux, dict) and "ID" in aux:
                        image_id = str(aux["ID"])
                    if time.monotonic() > deadline:
                        raise BuildFailed(
                            f"the build took longer than {self._build_timeout:g} s{log.tail()}"
                        )
        except docker.errors.APIError as exc:
            explanation = str(exc.explanation or exc)
            if exc.is_client_error() or "Dockerfile" in explanation:
                raise BuildFailed(f"the image does not build: {explanation}{log.tail()}") from exc
            raise EngineUnavailable(f"docker engine failed to build: {exc}") from exc
        except _ENGINE_ERRORS as exc:
            if time.monotonic() >= deadline - 1:
                raise BuildFailed(
                    f"the build took longer than {self._build_timeout:g} s{log.tail()}"
                ) from exc
            raise EngineUnavailable(f"docker engine failed to build: {exc}") from exc
        if error is not None:
            raise BuildFailed(f"the image does not build: {error}{log.tail()}")
        if image_id is None:
            raise EngineUnavailable(f"the build ended without an image id{log.tail()}")
        return BuildResult(image_id=image_id, cached=False, log=log.text())

    # --- run --------------------------------------------------------------------------------

    async def run(
        self,
        spec: RunSpec,
        on_output: OutputCallback | None,
        cancel: asyncio.Event,
    ) -> RunResult:
        loop = asyncio.get_running_loop()
        buffer = OutputBuffer(spec.output_limit)
        pump = _OutputPump(loop)
        stop_waiting = threading.Event()
        limit_passed = asyncio.Event()
        helpers: list[asyncio.Future[Any]] = []
        create: asyncio.Future[str] = asyncio.ensure_future(
            self._call("create a container", _create_container, spec, self._tmp_size_mb)
        )
        # The output stream's own client, made while the container is created.
        connect: asyncio.Future[_ClosingClient] = asyncio.ensure_future(
            self._call("connect to the engine", lambda _api: self._one_off_client(None))
        )
        container_id: str | None = None
        attach_client: _ClosingClient | None = None
        try:
            container_id = cid = await asyncio.shield(create)
            # The artifacts directory's stat before the start, alongside the attach.
            baseline = asyncio.ensure_future(self._artifacts_baseline(cid, spec))
            helpers.append(baseline)
            attach_client = await connect
            stream = await self._call(
                "attach to a container", lambda _api: _attach(attach_client.api, cid)
            )
            pump.start(stream, name=f"docker-output-{container_id[:12]}")
            before = await baseline
            await self._call("start a container", _start, container_id)
            deadline = loop.time() + spec.timeout_seconds
            exited = _in_thread(
                lambda: self._wait_blocking(cid, stop_waiting), name=f"docker-wait-{cid[:12]}"
            )
            consumer = asyncio.ensure_future(_consume(pump, buffer, on_output, spec, limit_passed))
            cancelled = asyncio.ensure_future(cancel.wait())
            limited = asyncio.ensure_future(limit_passed.wait())
            helpers += [exited, consumer, cancelled, limited]

            status, error = await self._supervise(
                container_id, exited, consumer, cancelled, limited, deadline, spec, cancel
            )
            exit_code = await self._exit_after_stop(container_id, exited)
            # The stopped container's artifacts stat, while the output drains.
            untouched = asyncio.ensure_future(self._artifacts_untouched(cid, spec, before))
            helpers.append(untouched)
            with suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(consumer), _DRAIN_SECONDS)
            failure = consumer.exception() if consumer.done() else None
            if failure is not None:
                raise failure  # on_output's own error, now that the container is stopped
            if status is None:
                status, error = await self._judge_exit(container_id, exit_code, spec, buffer)
            artifacts: tuple[CollectedArtifact, ...] = ()
            problems: tuple[str, ...] = ()
            if (
                spec.artifacts_path is not None
                and status is not RunStatus.CANCELLED
                and not await untouched
            ):
                artifacts, problems = await self._collect(container_id, spec)
            return RunResult(
                status=status,
                exit_code=exit_code,
                output=buffer.render(),
                output_bytes=buffer.total_bytes,
                output_truncated=buffer.truncated,
                artifacts=artifacts,
                artifact_problems=problems,
                error=error,
                container_id=container_id,
            )
        finally:
            for helper in helpers:
                helper.cancel()
            pump.close()
            stop_waiting.set()
            if attach_client is not None:
                attach_client.close()
            else:
                connect.add_done_callback(_close_connected)  # made (or making) but unused
            cleanup = asyncio.ensure_future(self._dispose(create))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)
            # Shielded: a cancelled run still removes its container before it unwinds.
            await asyncio.shield(cleanup)

    async def _supervise(
        self,
        container_id: str,
        exited: asyncio.Future[int | None],
        consumer: asyncio.Future[None],
        cancelled: asyncio.Future[Any],
        limited: asyncio.Future[Any],
        deadline: float,
        spec: RunSpec,
        cancel: asyncio.Event,
    ) -> tuple[RunStatus | None, str | None]:
        """Wait for the first of: exit, timeout, cancel, output over a ``fail`` limit, or an
        error from ``on_output``. Stop the container unless it exited; return the status
        decided here (``None``: judge by the exit code) and an error text.

        A cancel wins over an exit seen at the same time: when ``cancel`` was already set
        as the exit was observed and the exit code is not 0, the container ended because of
        the cancel (e.g. 143 after a SIGTERM that raced the ``cancelled`` wake-up), so the
        run is ``cancelled``, not a plain failure."""
        loop = asyncio.get_running_loop()
        waiting: set[asyncio.Future[Any]] = {exited, consumer, cancelled, limited}
        status: RunStatus | None = None
        error: str | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                status = RunStatus.TIMED_OUT
                error = f"timed out after {spec.timeout_seconds:g} s"
                break
            done, _ = await asyncio.wait(
                waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if exited in done:
                if (cancelled in done or cancel.is_set()) and _exit_code(exited) != 0:
                    return RunStatus.CANCELLED, "cancelled while running"
                return None, None
            if cancelled in done:
                status, error = RunStatus.CANCELLED, "cancelled while running"
                break
            if limited in done:
                status = RunStatus.FAILED
                error = f"output exceeded {spec.output_limit} bytes (onOutputLimit=fail)"
                break
            if consumer in done:
                if consumer.exception() is not None:
                    break  # re-raised by ``run`` once the container is stopped
                waiting.discard(consumer)  # output closed early; the process may go on
        logger.info("stopping container", extra={"container_id": container_id, "reason": status})
        await self._call("stop a container", _stop, container_id, self._grace)
        return status, error

    async def _exit_after_stop(
        self, container_id: str, exited: asyncio.Future[int | None]
    ) -> int | None:
        try:
            return await asyncio.wait_for(asyncio.shield(exited), self._grace + 15)
        except TimeoutError:
            await self._call("kill a container", _kill, container_id)
            return await asyncio.wait_for(asyncio.shield(exited), 15)
        except _ENGINE_ERRORS as exc:
            raise EngineUnavailable(f"docker engine failed to wait for a container: {exc}") from exc

    def _wait_blocking(self, container_id: str, stop: threading.Event) -> int | None:
        """The exit code (``None`` if the container vanished), however long it takes."""
        api = self._client()
        poll = min(_WAIT_POLL_SECONDS, self._client_timeout)
        while True:
            try:
                return int(api.wait(container_id, timeout=poll)["StatusCode"])
            except docker.errors.NotFound:
                return None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
                # A read timeout of this one call (it is only a socket timeout), or the
                # engine went away: inspect tells which (it raises in the second case).
                if stop.is_set():
                    return None
                api.inspect_container(container_id)

    async def _judge_exit(
        self, container_id: str, exit_code: int | None, spec: RunSpec, buffer: OutputBuffer
    ) -> tuple[RunStatus, str | None]:
        if spec.on_output_limit == "fail" and buffer.truncated:
            return (
                RunStatus.FAILED,
                f"output exceeded {spec.output_limit} bytes (onOutputLimit=fail)",
            )
        if exit_code is None:
            # Removed under us (by hand, or another worker's orphan sweep): not the job's
            # doing, so an infrastructure error, retried.
            raise EngineUnavailable(f"container {container_id[:12]} vanished while running")
        if exit_code == 0:
            return RunStatus.SUCCEEDED, None
        state = await self._call("inspect a container", _state, container_id)
        if state.get("OOMKilled"):
            return RunStatus.FAILED, f"killed: out of memory (limit {spec.memory_mb} MiB)"
        return RunStatus.FAILED, f"exited with code {exit_code}"

    async def _artifacts_baseline(self, container_id: str, spec: RunSpec) -> dict[str, Any] | None:
        """The stat of the created (unstarted) container's artifacts directory when it starts
        empty, else ``None`` (then the artifacts are always read back in full)."""
        path = spec.artifacts_path
        if path is None or not spec.image.startswith("sha256:"):
            return None  # a tag may name another image tomorrow: nothing to remember
        key = (spec.image, path)
        empty = self._empty_artifacts.get(key)
        if empty is None:
            try:
                empty = await _in_thread(
                    lambda: self._is_empty_directory(container_id, path),
                    name=f"docker-artifacts-{container_id[:12]}",
                )
            except EngineUnavailable:
                empty = None
            if empty is None:
                return None  # the engine failed to answer: not remembered, tried next time
            self._empty_artifacts[key] = empty
        if not empty:
            return None
        try:
            return await self._call("stat the artifacts", _path_stat, container_id, path)
        except EngineUnavailable:
            return None  # read back in full after the exit

    def _is_empty_directory(self, container_id: str, path: str) -> bool | None:
        """Whether ``path`` in the container is an empty directory, from its tar (read up to
        ``_EMPTY_TAR_BYTES``; anything unexpected: ``False``); ``None`` if the engine failed."""
        with closing(self._one_off_client(self._client_timeout)) as one_off:
            try:
                chunks, _stat = one_off.api.get_archive(container_id, path)
                data = bytearray()
                for chunk in chunks:
                    data += chunk
                    if len(data) > _EMPTY_TAR_BYTES:
                        return False
                with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode="r:") as tar:
                    members = tar.getmembers()
            except _ENGINE_ERRORS:
                return None
            except (tarfile.TarError, OSError):
                return False
        return len(members) == 1 and members[0].isdir()

    async def _artifacts_untouched(
        self, container_id: str, spec: RunSpec, before: dict[str, Any] | None
    ) -> bool:
        """Whether the artifacts directory is still as the empty one stat'ed before the start
        (see the module docstring); ``False`` when unsure."""
        if before is None or spec.artifacts_path is None:
            return False
        try:
            after = await self._call(
                "stat the artifacts", _path_stat, container_id, spec.artifacts_path
            )
        except EngineUnavailable:
            return False  # the full read back says what is wrong
        return after == before

    async def _collect(
        self, container_id: str, spec: RunSpec
    ) -> tuple[tuple[CollectedArtifact, ...], tuple[str, ...]]:
        assert spec.artifacts_path is not None
        path = spec.artifacts_path

        def collect() -> tuple[tuple[CollectedArtifact, ...], tuple[str, ...]]:
            with closing(self._one_off_client(self._client_timeout)) as one_off:
                api = one_off.api
                try:
                    chunks, _stat = api.get_archive(container_id, path)
                except docker.errors.NotFound:
                    return (), (f"{path} does not exist in the container",)
                return collect_artifacts(
                    chunks, self._store, spec.artifact_limits, root=Path(path).name
                )

        try:
            return await _in_thread(collect, name=f"docker-artifacts-{container_id[:12]}")
        except _ENGINE_ERRORS as exc:
            raise EngineUnavailable(f"docker engine failed to copy artifacts: {exc}") from exc

    async def _dispose(self, create: asyncio.Future[str]) -> None:
        """Remove the container (and its artifacts volume), however the run ended."""
        try:
            container_id = await create
        except BaseException:
            return  # nothing was created
        try:
            await self._call("remove a container", _remove, container_id)
        except EngineUnavailable:
            # Left for ``cleanup_orphans``; the run's outcome stands.
            logger.exception("could not remove container", extra={"container_id": container_id})

    # --- orphans ----------------------------------------------------------------------------

    async def cleanup_orphans(
        self, owned_run_ids: set[str], *, only_labels: Mapping[str, str] | None = None
    ) -> list[str]:
        selectors = [LABEL_RUN, *(f"{key}={value}" for key, value in (only_labels or {}).items())]
        listed = await self._call(
            "list containers",
            lambda api: api.containers(all=True, filters={"label": selectors}),
        )
        removed: list[str] = []
        for container in listed:
            run_id = (container.get("Labels") or {}).get(LABEL_RUN)
            if run_id in owned_run_ids:
                continue
            container_id = str(container["Id"])
            await self._call("stop a container", _stop, container_id, self._grace)
            await self._call("remove a container", _remove, container_id)
            logger.warning(
                "removed orphaned container",
                extra={"container_id": container_id, "run_id": run_id},
            )
            removed.append(container_id)
        return removed


def _close_connected(connect: asyncio.Future[_ClosingClient]) -> None:
    """Close the client of a connect whose run ended before it was used."""
    if connect.cancelled():
        return
    if connect.exception() is None:
        connect.result().close()


def _exit_code(exited: asyncio.Future[int | None]) -> int | None:
    """The exit code of a settled wait (``None`` when it failed or the container vanished)."""
    if exited.cancelled() or exited.exception() is not None:
        return None
    return exited.result()


# --- blocking SDK calls (``api`` first, for ``DockerEngine._call``) -----------------------------


def _find_image(api: Any, digest: str) -> str | None:
    images = api.images(filters={"label": f"{LABEL_SOURCE_DIGEST}={digest}"})
    if not images:
        return None
    newest = max(images, key=lambda image: image.get("Created", 0))
    return str(newest["Id"])


def _image_if_labelled(api: Any, image_id: str, digest: str) -> str | None:
    """``image_id`` if that image still exists with ``longshore.source-digest=<digest>``."""
    try:
        image = api.inspect_image(image_id)
    except docker.errors.NotFound:
        return None
    labels = (image.get("Config") or {}).get("Labels") or {}
    return image_id if labels.get(LABEL_SOURCE_DIGEST) == digest else None


def _create_container(api: Any, spec: RunSpec, tmp_size_mb: int) -> str:
    mounts = []
    if spec.artifacts_path is not None:
        # An anonymous volume: writable on a read-only root and, unlike a tmpfs, still
        # there after the exit for ``get_archive`` (see the module docstring).
        mounts.append(Mount(target=spec.artifacts_path, source=None, type="volume"))
    memory = f"{spec.memory_mb}m"
    host_config = api.create_host_config(
        network_mode=spec.network,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        privileged=False,
        read_only=True,
        tmpfs={"/tmp": f"rw,nosuid,nodev,size={tmp_size_mb}m"},  # noqa: S108 (in the container)
        mounts=mounts,
        mem_limit=memory,
        memswap_limit=memory,
        nano_cpus=int(spec.cpus * 1_000_000_000),
        pids_limit=spec.pids_limit,
        init=True,
        auto_remove=False,
        # Output is captured through ``attach``. The engine's own copy (json-file) would
        # cost disk and cap a chatty job at ~2 MB/s here, and makes ``stop`` wait for it.
        log_config=LogConfig(type="none"),
    )
    created = api.create_container(
        spec.image,
        command=list(spec.command) if spec.command is not None else None,
        environment=list(spec.env),
        labels=dict(spec.labels),
        host_config=host_config,
        # With ``network_mode="none"`` alone, dockerd 20.10 spent ~300 ms more per start
        # setting up the empty sandbox (measured: 460 vs 160 ms); ``NetworkDisabled`` gives
        # the same isolation (a network namespace holding only ``lo``) without that cost.
        network_disabled=spec.network == "none",
        tty=False,
        stdin_open=False,
    )
    return str(created["Id"])


def _path_stat(api: Any, container_id: str, path: str) -> dict[str, Any] | None:
    """The engine's stat of a directory in the container (``HEAD /containers/{id}/archive``:
    no tar is made), or ``None`` if it is not a plain directory with a fine-grained mtime."""
    response = api.head(api._url("/containers/{0}/archive", container_id), params={"path": path})
    with closing(response):
        if response.status_code == 404:
            return None
        api._raise_for_status(response)
        header = response.headers.get(_STAT_HEADER)
    if not header:
        return None
    try:
        stat = json.loads(base64.b64decode(header))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(stat, dict):
        return None
    mode, mtime = stat.get("mode"), stat.get("mtime")
    is_dir = isinstance(mode, int) and mode & (1 << 31)  # Go's os.ModeDir
    # Whole seconds only: a coarse file system, where a write may keep the mtime.
    if not is_dir or stat.get("linkTarget") or not isinstance(mtime, str) or "." not in mtime:
        return None
    return stat


def _attach(api: Any, container_id: str) -> Any:
    """A ``CancellableStream`` of output chunks (``close()`` ends it from any thread)."""
    return api.attach(container_id, stdout=True, stderr=True, stream=True, logs=False)


def _start(api: Any, container_id: str) -> None:
    api.start(container_id)


def _stop(api: Any, container_id: str, grace: float) -> None:
    with suppress(docker.errors.NotFound):
        api.stop(container_id, timeout=max(0, round(grace)))


def _kill(api: Any, container_id: str) -> None:
    with suppress(docker.errors.NotFound, docker.errors.APIError):
        api.kill(container_id)


def _remove(api: Any, container_id: str) -> None:
    with suppress(docker.errors.NotFound):
        api.remove_container(container_id, v=True, force=True)


def _state(api: Any, container_id: str) -> dict[str, Any]:
    state: dict[str, Any] = api.inspect_container(container_id).get("State") or {}
    return state


class _ClosingClient:
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
        _close_client(self.api)


def _close_client(api: Any) -> None:
    """Close a client's connections. ``APIClient.close`` misses the SDK's unix-socket
    adapter, which keeps its connection pools in ``pools`` rather than a pool manager."""
    for adapter in list(api.adapters.values()):
        pools = getattr(adapter, "pools", None)
        if pools is not None:
            pools.clear()  # disposing of each pool closes its idle connections
    api.close()


# --- threads --------------------------------------------------------------------------------


def _in_thread(fn: Callable[[], T], *, name: str) -> asyncio.Future[T]:
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


class _OutputPump:
    """Moves chunks from the blocking output stream (a thread) into the event loop, with at
    most ``_PENDING_CHUNKS`` in flight so a slow consumer slows the job instead of memory."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._slots = threading.Semaphore(_PENDING_CHUNKS)
        self._closed = threading.Event()
        self._stream: Any = None

    def start(self, stream: Any, *, name: str) -> None:
        self._stream = stream
        threading.Thread(target=self._pump, args=(stream,), name=name, daemon=True).start()

    def _post(self, item: bytes | None) -> None:
        with suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _pump(self, stream: Any) -> None:
        try:
            for chunk in stream:
                while not self._slots.acquire(timeout=0.5):
                    if self._closed.is_set():
                        return
                if self._closed.is_set():
                    return
                self._post(chunk)
        except (*_ENGINE_ERRORS, OSError, ValueError) as exc:
            # The stream breaks when the container is removed under it; the run decides.
            logger.debug("output stream ended", extra={"error": str(exc)})
        finally:
            # Cancellation may already have closed the client's socket under the stream
            # from another thread; closing it again can only fail harmlessly.
            with suppress(*_ENGINE_ERRORS, OSError, ValueError):
                stream.close()
            self._post(None)

    async def get(self) -> bytes | None:
        """The next chunk, or ``None`` at the end of the stream."""
        item = await self._queue.get()
        if item is not None:
            self._slots.release()
        return item

    def close(self) -> None:
        """Stop pumping and close the stream (unblocks the reader thread)."""
        self._closed.set()
        if self._stream is not None:
            with suppress(Exception):  # best effort: the stream may be half gone
                self._stream.close()


async def _consume(
    pump: _OutputPump,
    buffer: OutputBuffer,
    on_output: OutputCallback | None,
    spec: RunSpec,
    limit_passed: asyncio.Event,
) -> None:
    while (chunk := await pump.get()) is not None:
        buffer.append(chunk)
        if on_output is not None:
            await on_output(chunk)
        if spec.on_output_limit == "fail" and buffer.truncated:
            limit_passed.set()


# --- output of the build ----------------------------------------------------------------------


class _LogTail:
    """The last ``limit`` characters of a build log."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[str] = []
        self._size = 0

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size > 2 * self._limit:
            joined = "".join(self._parts)[-self._limit :]
            self._parts, self._size = [joined], len(joined)

    def text(self) -> str:
        return "".join(self._parts)[-self._limit :]

    def tail(self, chars: int = 4000) -> str:
        """A suffix for error messages: the end of the log."""
        text = self.text()[-chars:].rstrip()
        return f"\n--- end of the build log ---\n{text}" if text else ""

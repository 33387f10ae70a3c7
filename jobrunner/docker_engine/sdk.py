"""The blocking Docker SDK calls of the engine, ``api`` first (for
:meth:`~jobrunner.docker_engine.client.DockerClients.call`).

How a job container is made is here (:func:`create_container`): every capability dropped,
``no-new-privileges``, a read-only root with a size-capped ``/tmp``, the job's limits, the
artifacts directory as an anonymous volume, no log driver, and ``init``.
"""

from __future__ import annotations

import base64
import binascii
import json
from contextlib import closing, suppress
from typing import TYPE_CHECKING, Any

import docker  # type: ignore[import-untyped, unused-ignore]
import requests.exceptions  # type: ignore[import-untyped, unused-ignore]
from docker.types import LogConfig, Mount  # type: ignore[import-untyped, unused-ignore]

from jobrunner.engine import LABEL_SCOPE, LABEL_SOURCE_DIGEST, RunSpec
from jobrunner.errors import JobRunFailed

if TYPE_CHECKING:
    import threading

    from jobrunner.docker_engine.client import DockerClients

_WAIT_POLL_SECONDS = 30.0  # socket timeout of one ``wait`` call; the loop re-issues it
_STAT_HEADER = "X-Docker-Container-Path-Stat"  # the stat of a ``HEAD .../archive``


def find_image(api: Any, digest: str, scope: str | None = None) -> str | None:
    """The newest image labelled ``longshore.source-digest=<digest>`` (and
    ``longshore.scope=<scope>`` when given), if any."""
    wanted = [f"{LABEL_SOURCE_DIGEST}={digest}"]
    if scope is not None:
        wanted.append(f"{LABEL_SCOPE}={scope}")
    images = api.images(filters={"label": wanted})
    if not images:
        return None
    newest = max(images, key=lambda image: image.get("Created", 0))
    return str(newest["Id"])


def image_if_labelled(api: Any, image_id: str, digest: str, scope: str | None = None) -> str | None:
    """``image_id`` if that image still exists with ``longshore.source-digest=<digest>``
    (and ``longshore.scope=<scope>`` when given)."""
    try:
        image = api.inspect_image(image_id)
    except docker.errors.NotFound:
        return None
    labels = (image.get("Config") or {}).get("Labels") or {}
    if labels.get(LABEL_SOURCE_DIGEST) != digest:
        return None
    return image_id if scope is None or labels.get(LABEL_SCOPE) == scope else None


def create_container(
    api: Any,
    spec: RunSpec,
    tmp_size_mb: int,
    artifacts_volume: str | None = None,
    files_volume: str | None = None,
) -> str:
    """Create (not start) the container of ``spec``; its id. ``artifacts_volume`` is the
    capped volume of the artifacts directory (``jobrunner.docker_engine.artifact_holders``);
    without one it is an anonymous volume, uncapped. ``files_volume`` holds the run's files,
    mounted read-only at ``/run`` (``jobrunner.docker_engine.run_files``)."""
    mounts = []
    if files_volume is not None:
        mounts.append(Mount(target="/run", source=files_volume, type="volume", read_only=True))
    if spec.artifacts_path is not None:
        # Writable on a read-only root and still there after the exit for ``get_archive``.
        mounts.append(Mount(target=spec.artifacts_path, source=artifacts_volume, type="volume"))
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
        # tini as PID 1 forwards SIGTERM (a bare ``sleep`` as PID 1 ignores it) and reaps
        # zombies.
        init=True,
        auto_remove=False,
        # Output is captured through ``attach``. The engine's own copy (json-file) would
        # cost disk and cap a chatty job at ~2 MB/s here (vs ~35 MB/s without), and makes
        # ``stop`` wait seconds for it to drain.
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
        user=spec.user,
        tty=False,
        stdin_open=False,
    )
    return str(created["Id"])


def path_stat(api: Any, container_id: str, path: str) -> dict[str, Any] | None:
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


def attach(api: Any, container_id: str) -> Any:
    """A ``CancellableStream`` of output chunks (``close()`` ends it from any thread)."""
    return api.attach(container_id, stdout=True, stderr=True, stream=True, logs=False)


def start(api: Any, container_id: str) -> None:
    """Start the container. The engine refusing it as a bad request (400: e.g. the image's
    ``/tmp`` is a file, so the tmpfs cannot be mounted) is the job's image's doing, not an
    engine fault to wait out: the attempt fails (``JobRunFailed``, spends a retry)."""
    try:
        api.start(container_id)
    except docker.errors.APIError as exc:
        if exc.status_code == 400:
            raise JobRunFailed(f"the container cannot start: {exc.explanation or exc}") from exc
        raise


def stop(api: Any, container_id: str, grace: float) -> None:
    """SIGTERM, ``grace`` seconds, then SIGKILL; a container already gone is fine."""
    with suppress(docker.errors.NotFound):
        api.stop(container_id, timeout=max(0, round(grace)))


def kill(api: Any, container_id: str) -> None:
    with suppress(docker.errors.NotFound, docker.errors.APIError):
        api.kill(container_id)


def remove(api: Any, container_id: str) -> None:
    """Remove the container with its anonymous volumes, running or not."""
    with suppress(docker.errors.NotFound):
        api.remove_container(container_id, v=True, force=True)


def state(api: Any, container_id: str) -> dict[str, Any]:
    container_state: dict[str, Any] = api.inspect_container(container_id).get("State") or {}
    return container_state


def wait_exit(clients: DockerClients, container_id: str, stop: threading.Event) -> int | None:
    """The exit code (``None`` if the container vanished), however long it takes; blocks."""
    api = clients.shared()
    poll = min(_WAIT_POLL_SECONDS, clients.timeout)
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

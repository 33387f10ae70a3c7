"""Removing what dead runs left on the engine: their containers and artifacts holders
(``ContainerEngine.cleanup_orphans``' contract).

A job container is an orphan when its run (``longshore.run``) is not among the runs still
alive; it is stopped and removed with its anonymous volumes, and the artifacts holder
whose volume it mounted (:mod:`~jobrunner.docker_engine.artifact_holders`) with it. A
holder no container uses any more, that this engine did not make and that is older than
the holders' orphan age, was left by a worker that died (a live engine replaces its idle
holders well before that age); it is removed by a full sweep (one not narrowed to runs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from jobrunner.docker_engine import sdk
from jobrunner.docker_engine.artifact_holders import (
    ORPHAN_AGE_SECONDS,
    remove_holder,
    remove_volume,
)
from jobrunner.docker_engine.client import DockerClients
from jobrunner.engine import LABEL_HOLDER, LABEL_RUN, LABEL_SCOPE

logger = logging.getLogger(__name__)


async def remove_orphans(
    clients: DockerClients,
    owned_run_ids: set[str],
    *,
    only_labels: Mapping[str, str] | None,
    grace: float,
    own_holders: set[str],
) -> list[str]:
    """Remove the orphaned containers and holders; the ids of the containers removed."""
    selectors = [LABEL_RUN, *(f"{key}={value}" for key, value in (only_labels or {}).items())]
    listed = await clients.call(
        "list containers", lambda api: api.containers(all=True, filters={"label": selectors})
    )
    removed: list[str] = []
    volumes: set[str] = set()
    for container in listed:
        run_id = (container.get("Labels") or {}).get(LABEL_RUN)
        if run_id in owned_run_ids:
            continue
        container_id = str(container["Id"])
        volumes.update(
            str(mount.get("Name")) for mount in container.get("Mounts") or () if mount.get("Name")
        )
        await clients.call("stop a container", sdk.stop, container_id, grace)
        await clients.call("remove a container", sdk.remove, container_id)
        logger.warning(
            "removed orphaned container", extra={"container_id": container_id, "run_id": run_id}
        )
        removed.append(container_id)
    full_sweep = LABEL_RUN not in (only_labels or {})
    scope = (only_labels or {}).get(LABEL_SCOPE)
    await _remove_holders(clients, volumes, scope, own_holders, idle_too=full_sweep)
    return removed


async def labelled_run_ids(clients: DockerClients, labels: Mapping[str, str]) -> set[str]:
    """The runs (``longshore.run``) of the containers, running or not, carrying ``labels``."""
    selectors = [LABEL_RUN, *(f"{key}={value}" for key, value in labels.items())]
    listed = await clients.call(
        "list containers", lambda api: api.containers(all=True, filters={"label": selectors})
    )
    return {str((c.get("Labels") or {}).get(LABEL_RUN)) for c in listed}


async def _remove_holders(
    clients: DockerClients,
    volumes: set[str],
    scope: str | None,
    own_holders: set[str],
    *,
    idle_too: bool,
) -> None:
    selectors = [LABEL_HOLDER] + ([f"{LABEL_SCOPE}={scope}"] if scope is not None else [])
    holders: list[dict[str, Any]] = await clients.call(
        "list artifacts holders",
        lambda api: api.containers(all=True, filters={"label": selectors}),
    )
    for holder in holders:
        container_id = str(holder["Id"])
        volume = (holder.get("Labels") or {}).get(LABEL_HOLDER, "")
        if container_id in own_holders or not volume:
            continue
        if volume not in volumes:
            old = time.time() - float(holder.get("Created") or 0) > ORPHAN_AGE_SECONDS
            if not idle_too or not old or await _in_use(clients, volume, container_id):
                continue
        await clients.call("remove an artifacts holder", remove_holder, container_id)
        await clients.call("remove an artifacts volume", remove_volume, volume)
        logger.warning("removed an orphaned artifacts holder", extra={"volume": volume})


async def _in_use(clients: DockerClients, volume: str, holder_id: str) -> bool:
    users: list[dict[str, Any]] = await clients.call(
        "list containers", lambda api: api.containers(all=True, filters={"volume": volume})
    )
    return any(str(user["Id"]) != holder_id for user in users)

"""How a job container's exit is judged: its status and error from the exit code, the
output limit and the engine's record of an out-of-memory kill."""

from __future__ import annotations

import asyncio

from jobrunner.docker_engine import sdk
from jobrunner.docker_engine.client import DockerClients
from jobrunner.engine import RunSpec, RunStatus
from jobrunner.errors import EngineUnavailable
from jobrunner.output import OutputBuffer


async def judge_exit(
    clients: DockerClients,
    container_id: str,
    exit_code: int | None,
    spec: RunSpec,
    buffer: OutputBuffer,
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
    state = await clients.call("inspect a container", sdk.state, container_id)
    if state.get("OOMKilled"):
        return RunStatus.FAILED, f"killed: out of memory (limit {spec.memory_mb} MiB)"
    return RunStatus.FAILED, f"exited with code {exit_code}"


def exit_code_of(exited: asyncio.Future[int | None]) -> int | None:
    """The exit code of a settled wait (``None`` when it failed or the container vanished)."""
    if exited.cancelled() or exited.exception() is not None:
        return None
    return exited.result()

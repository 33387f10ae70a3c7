"""A job's artifacts directory is capped while the job writes it, is still read back after
the job's exit, and leaves nothing on the engine: the tmpfs volume and the holder that keeps
it mounted go with the run (and with a dead worker's runs, in the orphan sweep).

Real Docker engine; the base image is imported locally (``docker_images.py``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobrunner.docker_engine import DockerEngine
from jobrunner.docker_engine.sdk import create_container
from jobrunner.engine import (
    LABEL_HOLDER,
    LABEL_JOB,
    LABEL_RUN,
    LABEL_SCOPE,
    ArtifactLimits,
    RunSpec,
    RunStatus,
)
from store.artifacts import ArtifactStore
from tests.integration.docker_images import BUSYBOX_IMAGE, docker_client, ensure_busybox_image

pytestmark = pytest.mark.docker

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def docker_api() -> Any:
    api = docker_client()
    ensure_busybox_image(api)
    return api


@pytest.fixture
async def engine(docker_api: Any, tmp_path: Path) -> AsyncIterator[DockerEngine]:
    engine = DockerEngine(ArtifactStore(tmp_path / "artifacts"), stop_grace_seconds=1)
    yield engine
    await engine.aclose()


def holders_of(api: Any, scope: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.containers(
        all=True, filters={"label": [LABEL_HOLDER, f"{LABEL_SCOPE}={scope}"]}
    )
    return found


def volumes_of(api: Any, scope: str) -> list[dict[str, Any]]:
    found = api.volumes(filters={"label": [LABEL_HOLDER, f"{LABEL_SCOPE}={scope}"]})
    return list(found.get("Volumes") or [])


def spec(scope: str, command: str, **overrides: Any) -> RunSpec:
    values: dict[str, Any] = {
        "image": BUSYBOX_IMAGE,
        "command": ("sh", "-c", command),
        "labels": {LABEL_JOB: "holder-test", LABEL_RUN: f"test-{uuid.uuid4().hex[:12]}"}
        | {LABEL_SCOPE: scope},
        "memory_mb": 64,
        "pids_limit": 64,
        "timeout_seconds": 30,
        "user": "65534:65534",
        "artifact_limits": ArtifactLimits(max_total_bytes=2 * MIB, max_file_bytes=2 * MIB),
    }
    values.update(overrides)
    return RunSpec(**values)


async def test_a_job_writing_past_the_artifacts_cap_fails_its_write_not_the_host(
    engine: DockerEngine, docker_api: Any
) -> None:
    scope = uuid.uuid4().hex[:16]
    script = (
        "id -u; head -c 1000000 /dev/urandom > /artifacts/fits.bin; echo fits=$?; "
        "head -c 5000000 /dev/zero > /artifacts/over.bin; echo over=$?; "
        "df -k /artifacts | tail -1"
    )
    result = await engine.run(spec(scope, script), None, asyncio.Event())
    output = result.output.decode()
    assert result.status is RunStatus.SUCCEEDED, output
    assert output.startswith("65534\n")  # any user may write the directory
    assert "fits=0" in output
    assert "over=1" in output  # the write failed (ENOSPC)
    assert " 2048 " in output  # a 2 MiB file system
    assert " 100% /artifacts" in output
    sizes = {artifact.name: artifact.size for artifact in result.artifacts}
    assert sizes["fits.bin"] == 1000000
    assert sizes["over.bin"] < 2 * MIB - 1000000 + 4096  # cut where the cap was reached
    assert holders_of(docker_api, scope) == []
    assert volumes_of(docker_api, scope) == []


async def test_a_spare_holder_is_kept_between_runs_and_removed_at_close(
    docker_api: Any, tmp_path: Path
) -> None:
    scope = uuid.uuid4().hex[:16]
    engine = DockerEngine(ArtifactStore(tmp_path / "artifacts"), artifact_holder_spares=1)
    try:
        for n in range(2):
            result = await engine.run(
                spec(scope, f"echo {n} > /artifacts/n.txt"), None, asyncio.Event()
            )
            assert [artifact.name for artifact in result.artifacts] == ["n.txt"]
            for _ in range(50):  # the spare is started in the background
                holders = holders_of(docker_api, scope)
                if len(holders) == 1 and holders[0]["State"] == "running":
                    break
                await asyncio.sleep(0.1)
            [spare] = holders_of(docker_api, scope)
            assert spare["State"] == "running"
    finally:
        await engine.aclose()
    assert holders_of(docker_api, scope) == []
    assert volumes_of(docker_api, scope) == []


async def test_the_orphan_sweep_removes_the_holder_of_a_dead_run(
    engine: DockerEngine, docker_api: Any, tmp_path: Path
) -> None:
    scope = uuid.uuid4().hex[:16]
    # What a worker that died mid-run leaves: its run's container and the holder of its
    # artifacts volume (made by another engine: the dead worker's).
    other = DockerEngine(ArtifactStore(tmp_path / "other"))
    holder = await other._holders.take(scope=scope, size_bytes=2 * MIB)
    assert holder is not None
    dead = spec(scope, "sleep 60")
    container = await asyncio.to_thread(create_container, docker_api, dead, 16, holder.volume)
    other.close()
    removed = await engine.cleanup_orphans(set(), only_labels={LABEL_SCOPE: scope})
    assert removed == [container]
    assert holders_of(docker_api, scope) == []
    assert volumes_of(docker_api, scope) == []


async def test_a_holder_left_as_new_by_an_unprivileged_run_is_the_next_spare(
    docker_api: Any, tmp_path: Path
) -> None:
    scope = uuid.uuid4().hex[:16]
    engine = DockerEngine(ArtifactStore(tmp_path / "artifacts"), artifact_holder_spares=1)
    image = docker_api.inspect_image(BUSYBOX_IMAGE)["Id"]  # by id: the image is known

    async def holder_after(command: str, **overrides: Any) -> str:
        await engine.run(spec(scope, command, image=image, **overrides), None, asyncio.Event())
        for _ in range(50):  # a replacement is started in the background
            holders = holders_of(docker_api, scope)
            if len(holders) == 1 and holders[0]["State"] == "running":
                return str(holders[0]["Id"])
            await asyncio.sleep(0.1)
        raise AssertionError(f"no single spare holder: {holders}")

    try:
        first = await holder_after("true")
        assert await holder_after("true") == first  # untouched: the same volume, as new
        written = await holder_after("echo x > /artifacts/x")
        assert written != first  # written to: replaced
        emptied = await holder_after("touch /artifacts/y && rm /artifacts/y")
        assert emptied != written  # changed, even if empty again: replaced
        as_root = await holder_after("true", user="0")
        assert as_root != emptied  # root could have changed what a stat does not show
        result = await engine.run(
            spec(scope, "ls -A /artifacts", image=image), None, asyncio.Event()
        )
        assert result.output == b""  # what every run finds: an empty directory
    finally:
        await engine.aclose()
    assert holders_of(docker_api, scope) == []
    assert volumes_of(docker_api, scope) == []

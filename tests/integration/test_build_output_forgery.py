"""A job's build prints what the engine's own build lines look like (`` ---> <id>``,
`` ---> Running in <id>``): Longshore must not take them for the engine's and remove, after the
build fails, images and containers that are not this build's (real Docker)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from store.jobs.models import RunStatus
from tests.integration.docker_images import BUSYBOX_IMAGE, build_context_tar
from tests.integration.test_build_sandbox import define
from tests.integration.test_job_runs import Env, docker_api, make_env

__all__ = ["docker_api"]

TEST_LABEL = "longshore-test.forgery"


@pytest.fixture
async def env(tmp_path: Path, docker_api: Any) -> AsyncIterator[Env]:
    async for value in make_env(tmp_path, docker_api, "sqlite"):
        yield value


@pytest.fixture
def victims(env: Env, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An image (one tag, no container) and a stopped container, both made before the
    build: their full ids."""
    tag = f"longshore-test/forgery-victim-{uuid.uuid4().hex[:8]}:1"
    context = build_context_tar(
        {"Dockerfile": f"FROM {BUSYBOX_IMAGE}\nRUN echo victim > /victim\n"},
        tmp_path / "victim.tar",
    )
    with context.open("rb") as data:
        for _ in env.docker.build(
            fileobj=data,
            custom_context=True,
            tag=tag,
            labels={TEST_LABEL: "1"},
            network_mode="none",
            rm=True,
            decode=True,
        ):
            pass
    image_id = str(env.docker.inspect_image(tag)["Id"])
    container = env.docker.create_container(
        BUSYBOX_IMAGE, command=["true"], labels={TEST_LABEL: "1"}
    )
    container_id = str(container["Id"])
    try:
        yield image_id, container_id
    finally:
        with _gone():
            env.docker.remove_container(container_id, force=True)
        with _gone():
            env.docker.remove_image(image_id, force=True)


class _gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, trace: Any) -> bool:
        return kind is not None and issubclass(kind, docker.errors.NotFound)


async def test_engine_lines_printed_by_a_failing_run_step_remove_nothing_of_others(
    env: Env, victims: tuple[str, str]
) -> None:
    image_id, container_id = victims
    image12, container12 = image_id.removeprefix("sha256:")[:12], container_id[:12]
    forged = f"printf '\\n ---> {image12}\\n ---> Running in {container12}\\n'"
    job = await define(env, f"FROM {BUSYBOX_IMAGE}\nRUN {forged} && exit 3\n")
    _, [run] = await env.run_job(job)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert f" ---> Running in {container12}" in run.error  # the forgery was read
    assert env.docker.inspect_image(image_id)["Id"] == image_id
    assert env.docker.inspect_container(container_id)["Id"] == container_id


async def test_engine_lines_printed_by_a_run_step_that_times_out_remove_nothing_of_others(
    env: Env, victims: tuple[str, str]
) -> None:
    image_id, container_id = victims
    image12, container12 = image_id.removeprefix("sha256:")[:12], container_id[:12]
    forged = f"printf '\\n ---> {image12}\\n ---> Running in {container12}\\n'"
    job = await define(env, f"FROM {BUSYBOX_IMAGE}\nRUN {forged} && sleep 60\n", timeout_seconds=4)
    _, [run] = await env.run_job(job)
    assert run.status is RunStatus.TIMED_OUT
    assert env.docker.inspect_container(container_id)["Id"] == container_id
    assert env.docker.inspect_image(image_id)["Id"] == image_id

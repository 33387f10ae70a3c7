"""A job's own image must not pass its failure off as an engine fault, which is waited out
on the infrastructure budget instead of spending the job's ``retries`` (real Docker)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from store.jobs.models import RunStatus
from tests.integration.docker_images import BUSYBOX_IMAGE
from tests.integration.test_build_sandbox import define, with_policy
from tests.integration.test_job_runs import Env, docker_api, make_env

__all__ = ["docker_api"]


@pytest.fixture
async def env(tmp_path: Path, docker_api: Any) -> AsyncIterator[Env]:
    async for value in make_env(tmp_path, docker_api, "sqlite"):
        yield value


async def test_an_image_the_engine_cannot_start_spends_a_retry_without_waiting(
    env: Env,
) -> None:
    patient = with_policy(env, infra_retry_seconds=30.0)
    # The image's /tmp is a file: the run's tmpfs cannot be mounted there, the engine
    # answers the start with 400. That is the image's doing: each attempt fails at once and
    # spends one of the job's retries.
    dockerfile = f'FROM {BUSYBOX_IMAGE}\nRUN rm -rf /tmp && echo x > /tmp\nCMD ["true"]\n'
    job = await define(patient, dockerfile, retries=1)
    began = time.monotonic()
    _, [first, run] = await patient.run_job(job)
    took = time.monotonic() - began
    assert (first.status, run.status) == (RunStatus.FAILED, RunStatus.FAILED)
    assert run.attempt == 2
    assert run.error is not None
    assert took < 20, f"waited {took:.0f} s for the engine: {run.error}"
    assert "JobRunFailed: the container cannot start" in run.error
    assert "/tmp" in run.error

"""What an attempt asks of the engine: the container's spec, and the image cache key."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from jobrunner.config import DEFAULT_USER, BuildPolicy, RunnerConfig
from jobrunner.engine import LABEL_JOB, LABEL_RUN, LABEL_SCOPE, LABEL_SOURCE_DIGEST, RunSpec
from store.jobs.models import JobDefinition


def run_spec(
    definition: JobDefinition,
    image: str,
    digest: str,
    run_id: str,
    timeout: float,
    scope: str,
    config: RunnerConfig,
) -> RunSpec:
    """The container of a run of ``definition``: its image, limits, labels and output rules."""
    labels: Mapping[str, str] = {
        LABEL_JOB: definition.name,
        LABEL_RUN: run_id,
        LABEL_SOURCE_DIGEST: digest,
        LABEL_SCOPE: scope,
    }
    return RunSpec(
        image=image,
        command=definition.command or None,
        env=definition.env,
        labels=labels,
        memory_mb=definition.resources.memory_mb,
        cpus=definition.resources.cpus,
        pids_limit=definition.resources.pids_limit,
        network=definition.network,
        timeout_seconds=timeout,
        user=definition.user or DEFAULT_USER,
        artifact_limits=config.artifact_limits,
        output_limit=definition.output_bytes or config.output_bytes,
        on_output_limit=definition.on_output_limit.value,
        artifacts_path=definition.artifacts_path or None,
    )


def source_digest(
    identity: str, path: str | None, dockerfile: str, policy: BuildPolicy | None = None
) -> str:
    """The image cache key: SHA256 of the source identity, context path and Dockerfile,
    and of the build policy's settings (allowed bases, pulls), so that an image is reused
    only under the policy that checked it."""
    policy = policy or BuildPolicy()
    settings = f"bases={','.join(policy.base_images)};pull={policy.pull}"
    text = "\0".join((identity, path or "", dockerfile, settings))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

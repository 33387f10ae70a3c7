"""``longshore images prune``: on the database and the real Docker engine, it removes the job
images of this deployment's scope past the newest ``WORKER_IMAGE_RETENTION_KEEP`` source
digests of each job, lists them first with ``--dry-run``, and leaves another scope's image
alone."""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from jobrunner.config import deployment_scope
from jobrunner.engine import LABEL_JOB, LABEL_SCOPE, LABEL_SOURCE_DIGEST
from tests.acceptance.conftest import Longshore
from tests.integration.docker_images import docker_client, ensure_busybox_image
from tests.integration.test_image_retention import build_image, exists

pytestmark = [
    pytest.mark.slow,
    pytest.mark.docker,
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
]


@pytest.fixture
def docker_api() -> Any:
    api = docker_client()
    ensure_busybox_image(api)
    return api


def test_images_prune_keeps_the_newest_digests_of_its_own_scope(
    longshore: Longshore, tmp_path: Path, docker_api: Any
):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    longshore.env.update(
        {
            "WORKER_JOB_WORKDIR": str(work_dir),
            "WORKER_IMAGE_RETENTION_KEEP": "1",
            "WORKER_IMAGE_BUILD_CACHE_MAX_BYTES": "off",
        }
    )
    longshore.ok("migrate")
    scope = deployment_scope(work_dir)
    job = f"img-{uuid.uuid4().hex[:10]}"
    images: list[str] = []
    try:
        for n in range(3):
            labels = {LABEL_SCOPE: scope, LABEL_JOB: job, LABEL_SOURCE_DIGEST: f"{n:064d}"}
            images.append(build_image(docker_api, labels, f"{job}-{n}"))
            time.sleep(1.1)  # the engine dates images to the second
        other_labels = {LABEL_SCOPE: f"x{scope[1:]}", LABEL_JOB: job, LABEL_SOURCE_DIGEST: "0"}
        images.append(build_image(docker_api, other_labels, f"{job}-other"))

        dry = longshore.json("images", "prune", "--dry-run")
        assert dry["dryRun"] is True
        assert sorted(image["imageId"] for image in dry["images"]) == sorted(images[:2])
        assert {image["job"] for image in dry["images"]} == {job}
        assert all(exists(docker_api, image) for image in images)
        text = longshore.ok("images", "prune", "--dry-run")
        assert f"{job}: would remove" in text

        done = longshore.json("images", "prune")
        assert sorted(image["imageId"] for image in done["images"]) == sorted(images[:2])
        assert [exists(docker_api, image) for image in images] == [False, False, True, True]
        assert longshore.json("images", "prune")["images"] == []
    finally:
        for image in images:
            with contextlib.suppress(Exception):
                docker_api.remove_image(image, force=True)

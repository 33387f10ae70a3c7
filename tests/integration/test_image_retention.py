"""Image retention with the real engine: after 5 source digests of a job kept to 2, exactly
the images of the last 2 remain; an image labelled for another scope, one a run under way
uses and one Longshore did not build are untouched; what a build whose process died left
(its journal) is removed, while a build under way is not touched."""

from __future__ import annotations

import contextlib
import io
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobrunner.docker_engine import DockerEngine
from jobrunner.docker_engine.images import BuildJournal
from jobrunner.engine import LABEL_JOB, LABEL_SCOPE, LABEL_SOURCE_DIGEST
from jobrunner.image_retention import ImagePruner, ImageRetention
from store.jobs.models import RunStatus, RunTrigger
from tests.integration.docker_images import BUSYBOX_IMAGE
from tests.integration.test_job_runner_recovery import runner_on
from tests.integration.test_job_runs import (
    Env,
    docker_api,  # noqa: F401 (a fixture)
    job_files,
    make_env,
    tarball,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
async def env(tmp_path: Path, docker_api: Any) -> AsyncIterator[Env]:  # noqa: F811
    async for value in make_env(tmp_path, docker_api, "sqlite"):
        yield value


@pytest.fixture
def made(docker_api: Any) -> Iterator[list[str]]:  # noqa: F811
    """Images the test makes by hand, removed at the end whatever happened."""
    images: list[str] = []
    yield images
    for image in images:
        with contextlib.suppress(Exception):  # removed by the test already
            docker_api.remove_image(image, force=True)


def build_image(api: Any, labels: dict[str, str], marker: str) -> str:
    """A small image built by hand (not by Longshore), with ``labels``."""
    dockerfile = f"FROM {BUSYBOX_IMAGE}\nRUN echo {marker} > /marker\n"
    stream = api.build(fileobj=io.BytesIO(dockerfile.encode()), labels=labels, rm=True, decode=True)
    image_id = None
    for item in stream:
        assert "error" not in item, item
        if "aux" in item and "ID" in item["aux"]:
            image_id = str(item["aux"]["ID"])
    assert image_id is not None
    return image_id


def exists(api: Any, image_id: str) -> bool:
    try:
        api.inspect_image(image_id)
    except Exception:
        return False
    return True


async def test_a_job_keeps_the_images_of_its_last_two_source_digests(
    env: Env, tmp_path: Path, made: list[str]
) -> None:
    journal_dir = tmp_path / "image-builds"
    engine = DockerEngine(env.artifacts, build_journal_dir=journal_dir)
    env.runner = runner_on(env, engine)
    job = await env.define(
        source="tarball_path",
        source_fields={"tarball_path": "job.tar.gz"},
        queue=f"jobs-{env.tag_prefix}",
    )
    scope = env.runner.scope
    try:
        images: list[str] = []
        for version in range(5):
            (env.tarball_dir / "job.tar.gz").write_bytes(
                tarball(job_files(f"echo version {version}\n"))
            )
            _, [run] = await env.run_job(job.name)
            assert run.status is RunStatus.SUCCEEDED, run.error
            assert run.image_id not in images
            images.append(str(run.image_id))
        assert journal_dir.is_dir()
        assert list(journal_dir.iterdir()) == [], "a finished build leaves no journal"
        mine = {image.image_id for image in await engine.images.labelled_images({})}
        assert set(images) <= mine

        # Another deployment's image of a job of the same name, and an image nobody labelled.
        other = build_image(
            env.docker,
            {LABEL_SCOPE: f"other-{env.tag_prefix}", LABEL_JOB: job.name, LABEL_SOURCE_DIGEST: "x"},
            f"other-{env.tag_prefix}",
        )
        unlabelled = build_image(env.docker, {}, f"plain-{env.tag_prefix}")
        made.extend([other, unlabelled])

        pruner = ImagePruner(
            images=engine.images,
            runs=env.runs,
            scope=scope,
            retention=ImageRetention(default=2, build_cache_bytes=None),
        )
        dry = await pruner.prune(dry_run=True)
        assert sorted(image.image_id for image in dry.images) == sorted(images[:3])
        assert all(exists(env.docker, image) for image in images)

        report = await pruner.prune()
        assert sorted(image.image_id for image in report.images) == sorted(images[:3])
        assert {image.job for image in report.images} == {job.name}
        assert report.bytes_freed > 0
        left = await engine.images.labelled_images({LABEL_SCOPE: scope, LABEL_JOB: job.name})
        assert sorted(image.image_id for image in left) == sorted(images[3:])
        assert [exists(env.docker, image) for image in images] == [False] * 3 + [True] * 2
        assert exists(env.docker, other)
        assert exists(env.docker, unlabelled)
        assert exists(env.docker, BUSYBOX_IMAGE)

        # The next pass removes nothing more; a removed digest is rebuilt when it is run.
        assert (await pruner.prune()).images == ()
        (env.tarball_dir / "job.tar.gz").write_bytes(tarball(job_files("echo version 0\n")))
        _, [rerun] = await env.run_job(job.name)
        assert rerun.status is RunStatus.SUCCEEDED, rerun.error
        assert env.output(rerun) == b"version 0\n"
    finally:
        for image in await engine.images.labelled_images({LABEL_SCOPE: scope}):
            await engine.images.remove_image(image.image_id)
        engine.close()


async def test_images_a_run_under_way_may_use_are_kept(env: Env, made: list[str]) -> None:
    scope = env.runner.scope
    job = await env.define(
        source="tarball_path",
        source_fields={"tarball_path": "x.tar.gz"},
        queue=f"jobs-{env.tag_prefix}",
    )
    images: list[str] = []
    for n in range(3):
        if images:
            time.sleep(1.1)  # the engine dates images to the second: keep their order certain
        labels = {LABEL_SCOPE: scope, LABEL_JOB: job.name, LABEL_SOURCE_DIGEST: f"d{n}"}
        images.append(build_image(env.docker, labels, f"{env.tag_prefix}-{n}"))
        made.append(images[-1])
    pruner = ImagePruner(
        images=env.engine.images, runs=env.runs, scope=scope, retention=ImageRetention(default=1)
    )
    # A queued run: it may be about to use any image of its job.
    _, run_id = await env.runner.submit(job.name, trigger=RunTrigger.API, actor="t")
    assert (await pruner.prune(dry_run=True)).images == ()
    # Running on the oldest image: that one stays, beside the newest.
    await env.runs.transition(run_id, RunStatus.RUNNING, image_id=images[0])
    report = await pruner.prune()
    assert [image.image_id for image in report.images] == [images[1]]
    assert [exists(env.docker, image) for image in images] == [True, False, True]


async def test_what_a_dead_build_left_is_removed_and_a_build_under_way_is_not(
    env: Env, tmp_path: Path, made: list[str]
) -> None:
    journal = BuildJournal(tmp_path / "image-builds")
    engine = DockerEngine(env.artifacts, build_journal_dir=journal.directory)
    dead_step = build_image(env.docker, {}, f"dead-{uuid.uuid4().hex}")
    live_step = build_image(env.docker, {}, f"live-{uuid.uuid4().hex}")
    made.extend([dead_step, live_step])
    dead = journal.open()
    live = journal.open()
    assert dead is not None
    assert live is not None
    dead.note(dead_step)
    dead.keep = True  # its process died: the journal stays
    dead.close()
    live.note(live_step)
    try:
        assert await engine.images.remove_build_leftovers() == [dead_step]
        assert not exists(env.docker, dead_step)
        assert exists(env.docker, live_step)
        assert not dead.path.exists()
        assert live.path.exists()
    finally:
        live.close()
        engine.close()
    assert not live.path.exists()


class RemovingEngine:
    """The real engine, where the run's image is removed (as image retention would) between
    the run finding it and starting its container, on the first start only."""

    def __init__(self, engine: DockerEngine, docker: Any) -> None:
        self._engine = engine
        self._docker = docker
        self.removed: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def run(self, spec: Any, on_output: Any, cancel: Any) -> Any:
        if not self.removed:
            self._docker.remove_image(spec.image)
            self.removed.append(spec.image)
        return await self._engine.run(spec, on_output, cancel)

    async def cleanup_orphans(self, owned: set[str], *, only_labels: Any = None) -> list[str]:
        return await self._engine.cleanup_orphans(owned, only_labels=only_labels)


async def test_an_image_removed_as_its_run_starts_fails_that_attempt_and_is_rebuilt(
    env: Env,
) -> None:
    removing = RemovingEngine(env.engine, env.docker)
    env.runner = runner_on(env, removing, infra_retry_seconds=600.0)
    (env.tarball_dir / "gone.tar.gz").write_bytes(
        tarball(job_files(f"echo rebuilt {uuid.uuid4().hex}\n"))
    )
    job = await env.define(
        source="tarball_path",
        source_fields={"tarball_path": "gone.tar.gz"},
        queue=f"jobs-{env.tag_prefix}",
        retries=1,
    )
    _, runs = await env.run_job(job.name)
    first, second = runs
    assert removing.removed == [first.image_id]
    assert first.status is RunStatus.FAILED
    assert first.error is not None
    assert "its image was removed before its container started" in first.error
    assert [e for e in await env.events.by_run(first.run_id) if e.type == "RunWaiting"] == []
    assert second.status is RunStatus.SUCCEEDED, second.error
    assert second.image_id != first.image_id
    assert exists(env.docker, str(second.image_id))

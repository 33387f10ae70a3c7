"""Retention of job images: per job the images of the last K source digests are kept.

Every job image carries the labels of its build: the deployment's ``longshore.scope``, the
job (``longshore.job``) and the source digest (``longshore.source-digest``). A pass lists
the images of its own scope only (never another deployment's, never one Longshore did not
build: an image without the scope label is not listed), groups them by job, and keeps:

- the images of the job's ``keep_last`` newest source digests (by image creation time);
- every image a run under way uses (its ``image_id``);
- every image of a job that has a run under way whose image is not known yet (``queued``,
  ``fetching``, ``building``): that run may be about to use any of them. This is asked
  again right before a job's images are removed; a run that starts in the few
  milliseconds after and resolves to an old source digest finds its image gone when it
  starts its container: that attempt fails and the next builds the image again
  (:mod:`jobrunner.container_start`).

The others are removed, never forced: an image a container still uses (or that another
image builds on) stays until a later pass. Removing an image removes the images of its
build's steps with it. A pass also removes what builds whose process died left (see
:mod:`jobrunner.docker_engine.images`) and shrinks the engine's build cache to
``build_cache_bytes`` (``None``: left alone).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from jobrunner.engine import LABEL_JOB, LABEL_SCOPE, LABEL_SOURCE_DIGEST, ImageEngine, ImageInfo
from store.jobs.protocol import RunStore

logger = logging.getLogger(__name__)

DEFAULT_KEEP = 3


@dataclass(frozen=True, kw_only=True)
class ImageRetention:
    """How many source digests' images each job keeps (``default``, or its own in
    ``jobs``), and the size the build cache is kept to."""

    default: int = DEFAULT_KEEP
    jobs: Mapping[str, int] = field(default_factory=dict)
    build_cache_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.default < 1 or any(keep < 1 for keep in self.jobs.values()):
            raise ValueError("images kept per job must be at least 1")

    def keep_for(self, job: str) -> int:
        return self.jobs.get(job, self.default)


@dataclass(frozen=True, kw_only=True)
class ImageRemoval:
    """An image a pass removed (or, with ``dry_run``, would remove)."""

    image_id: str
    job: str
    source_digest: str
    size: int


@dataclass(frozen=True, kw_only=True)
class ImagePruneReport:
    dry_run: bool
    images: tuple[ImageRemoval, ...]
    kept: int
    leftovers: int
    build_cache_bytes_freed: int
    seconds: float

    @property
    def bytes_freed(self) -> int:
        """The sizes of the images removed (shared layers may make the disk gain smaller)."""
        return sum(image.size for image in self.images)


class ImagePruner:
    """Applies an :class:`ImageRetention` to the images of ``scope`` (module docstring)."""

    def __init__(
        self, *, images: ImageEngine, runs: RunStore, scope: str, retention: ImageRetention
    ) -> None:
        self._images = images
        self._runs = runs
        self._scope = scope
        self._retention = retention

    async def prune(self, *, dry_run: bool = False) -> ImagePruneReport:
        started = time.monotonic()
        listed = await self._images.labelled_images({LABEL_SCOPE: self._scope})
        # Runs are read after the images: an image built since is not listed, so a run that
        # uses it cannot be missed; a run under way read now protects what it may use.
        active = await self._runs.active_runs()
        in_use = {run.image_id for run in active if run.image_id}
        unknown = {run.job for run in active if not run.image_id}
        by_job: dict[str, list[ImageInfo]] = defaultdict(list)
        for image in listed:
            job = image.labels.get(LABEL_JOB)
            if job and image.labels.get(LABEL_SOURCE_DIGEST):
                by_job[job].append(image)
        doomed: list[ImageRemoval] = []
        kept = 0
        for job, images in sorted(by_job.items()):
            if job in unknown:
                kept += len(images)
                continue
            newest = sorted(images, key=lambda image: image.created, reverse=True)
            digests: list[str] = []
            for image in newest:
                digest = image.labels[LABEL_SOURCE_DIGEST]
                if digest not in digests:
                    digests.append(digest)
            keep = set(digests[: self._retention.keep_for(job)])
            for image in newest:
                digest = image.labels[LABEL_SOURCE_DIGEST]
                if digest in keep or image.image_id in in_use:
                    kept += 1
                    continue
                doomed.append(
                    ImageRemoval(
                        image_id=image.image_id, job=job, source_digest=digest, size=image.size
                    )
                )
        removed: list[ImageRemoval] = []
        leftovers, cache_freed = 0, 0
        if dry_run:
            removed = doomed
        else:
            rechecked: dict[str, bool] = {}
            for removal in doomed:
                if removal.job not in rechecked:
                    rechecked[removal.job] = await self._still_idle(removal.job)
                if rechecked[removal.job] and await self._images.remove_image(removal.image_id):
                    removed.append(removal)
                else:
                    kept += 1
            leftovers = len(await self._images.remove_build_leftovers())
            if self._retention.build_cache_bytes is not None:
                cache_freed = await self._images.prune_build_cache(
                    self._retention.build_cache_bytes
                )
        return ImagePruneReport(
            dry_run=dry_run,
            images=tuple(removed),
            kept=kept,
            leftovers=leftovers,
            build_cache_bytes_freed=cache_freed,
            seconds=time.monotonic() - started,
        )

    async def _still_idle(self, job: str) -> bool:
        """Whether ``job`` still has no run that may be about to pick an image (asked again
        right before its images go: a run may have started since the pass looked)."""
        return all(run.image_id for run in await self._runs.active_runs(job))


def log_image_report(report: ImagePruneReport) -> None:
    logger.info(
        "image retention pass",
        extra={
            "dry_run": report.dry_run,
            "images_removed": len(report.images),
            "images_kept": report.kept,
            "build_leftovers_removed": report.leftovers,
            "bytes_freed": report.bytes_freed,
            "build_cache_bytes_freed": report.build_cache_bytes_freed,
            "seconds": round(report.seconds, 3),
        },
    )

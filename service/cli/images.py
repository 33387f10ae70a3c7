"""``longshore images prune``: image retention on demand.

Like ``longshore runs prune`` it works directly, on the database (which runs are under way)
and the Docker engine (``DOCKER_HOST``), not over the admin API: it removes the job images
of this deployment's scope (its work directory) that ``WORKER_IMAGE_RETENTION_*`` lets go,
what builds whose process died left, and build cache beyond
``WORKER_IMAGE_BUILD_CACHE_MAX_BYTES``, as ``serve`` does in the background. Images of
another scope, and images Longshore did not build, are never touched.
"""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli.common import (
    DatabaseUrl,
    JsonFlag,
    command_group,
    print_json,
    run_async,
    settings_for,
)

app = command_group("Job images: prune those the retention settings let go.")

DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Only list the images that would be removed.")
]


@app.command("prune")
def prune(
    dry_run: DryRun = False, database_url: DatabaseUrl = None, as_json: JsonFlag = False
) -> None:
    """Remove the job images the retention settings let go (on the database and the Docker
    engine directly)."""
    # The Docker engine and the runtime are loaded by this command only.
    from jobrunner.config import deployment_scope
    from jobrunner.docker_engine import DockerEngine
    from jobrunner.image_retention import ImagePruner, ImagePruneReport
    from service.backends import open_store
    from service.retention import image_retention
    from service.runtime import build_journal_dir, runner_config
    from store.artifacts import ArtifactStore

    settings = settings_for(database_url)
    config = runner_config(settings)

    async def go() -> ImagePruneReport:
        engine = DockerEngine(
            ArtifactStore(settings.data_dir / "artifacts"),
            build_journal_dir=build_journal_dir(config.work_dir),
        )
        try:
            async with open_store(settings) as stores:
                pruner = ImagePruner(
                    images=engine.images,
                    runs=stores.runs,
                    scope=deployment_scope(config.work_dir),
                    retention=image_retention(settings),
                )
                return await pruner.prune(dry_run=dry_run)
        finally:
            engine.close()

    report = run_async(go)
    if as_json:
        print_json(
            {
                "dryRun": report.dry_run,
                "images": [
                    {
                        "imageId": image.image_id,
                        "job": image.job,
                        "sourceDigest": image.source_digest,
                        "sizeBytes": image.size,
                    }
                    for image in report.images
                ],
                "imagesKept": report.kept,
                "bytesFreed": report.bytes_freed,
                "buildLeftoversRemoved": report.leftovers,
                "buildCacheBytesFreed": report.build_cache_bytes_freed,
                "seconds": round(report.seconds, 3),
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    for image in report.images:
        short = image.image_id.removeprefix("sha256:")[:12]
        typer.echo(f"{image.job}: {verb} {short} (source {image.source_digest[:12]})")
    summary = (
        f"{verb} {len(report.images)} image(s), {report.bytes_freed} bytes; kept {report.kept}"
    )
    if not dry_run:
        summary += (
            f"; build leftovers removed: {report.leftovers}"
            f"; build cache freed: {report.build_cache_bytes_freed} bytes"
        )
    typer.echo(f"{summary} in {report.seconds:.2f} s")

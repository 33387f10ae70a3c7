"""``longshore runs prune``: run retention on demand.

Unlike the other ``runs`` commands this one works on the database and the data directory
directly (like ``tasks`` and ``dlq``), not over the admin API: it deletes the runs that
``WORKER_RUN_RETENTION_*`` lets go and frees the artifact-store blobs no run references any
more, as ``serve`` does in the background. It is safe while ``serve`` runs (both delete only
final runs and free only unreferenced blobs), and works while it is down.
"""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli.common import DatabaseUrl, JsonFlag, print_json, run_async, settings_for

DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Only count the runs that would be deleted.")
]


def prune(
    dry_run: DryRun = False, database_url: DatabaseUrl = None, as_json: JsonFlag = False
) -> None:
    """Delete the runs the retention settings let go and free their artifacts (on the
    database directly)."""
    # The store and the retention code are loaded by this command only.
    from jobrunner.run_retention import PruneReport, RunPruner
    from service.backends import open_store
    from service.retention import run_retention
    from store.artifacts import ArtifactStore

    settings = settings_for(database_url)

    async def go() -> PruneReport:
        async with open_store(settings) as stores:
            pruner = RunPruner(
                runs=stores.runs,
                artifacts=ArtifactStore(settings.data_dir / "artifacts"),
                retention=run_retention(settings),
                pause=0.0,
            )
            return await pruner.prune(dry_run=dry_run)

    report = run_async(go)
    if as_json:
        print_json(
            {
                "dryRun": report.dry_run,
                "jobs": report.jobs,
                "runsDeleted": report.runs_deleted,
                "blobsFreed": report.blobs_freed,
                "bytesFreed": report.bytes_freed,
                "seconds": round(report.seconds, 3),
                "byJob": dict(report.by_job),
            }
        )
        return
    verb = "would delete" if dry_run else "deleted"
    for job, count in sorted(report.by_job.items()):
        typer.echo(f"{job}: {verb} {count} run(s)")
    summary = f"{verb} {report.runs_deleted} run(s) of {report.jobs} job(s)"
    if not dry_run:
        summary += f", freed {report.blobs_freed} blob(s), {report.bytes_freed} bytes"
    typer.echo(f"{summary} in {report.seconds:.2f} s")

"""The metric families of what this process did on its own, beside the stores' numbers
(:mod:`admin.metrics` documents them): run retention and crash leftovers, and the job
runner's waits for its infrastructure."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from jobrunner.infra_wait import InfraWaits
from jobrunner.run_retention import RetentionCounters


def retention_families(counters: RetentionCounters | None) -> Iterator[Metric]:
    if counters is None:
        return
    yield CounterMetricFamily(
        "longshore_retention_passes", "Run retention passes.", value=counters.passes
    )
    deleted = counters.runs_deleted
    yield CounterMetricFamily("longshore_retention_runs_deleted", "Runs deleted.", value=deleted)
    freed = CounterMetricFamily(
        "longshore_retention_freed_bytes",
        "Bytes freed: blobs of deleted runs, crash leftovers.",
        labels=["kind"],
    )
    freed.add_metric(["blobs"], counters.bytes_freed)
    freed.add_metric(["leftovers"], counters.leftover_bytes_freed)
    freed.add_metric(["images"], counters.image_bytes_freed)
    freed.add_metric(["build_cache"], counters.build_cache_bytes_freed)
    yield freed
    yield CounterMetricFamily(
        "longshore_retention_image_passes", "Image retention passes.", value=counters.image_passes
    )
    yield CounterMetricFamily(
        "longshore_retention_images_removed", "Job images removed.", value=counters.images_removed
    )
    yield GaugeMetricFamily(
        "longshore_retention_last_pass_seconds",
        "How long the last run retention pass took.",
        value=counters.last_pass_seconds,
    )


def infra_families(waits: InfraWaits) -> Iterator[Metric]:
    waiting = GaugeMetricFamily(
        "longshore_runs_waiting",
        "Job run attempts waiting for their infrastructure now, by what they wait for.",
        labels=["reason"],
    )
    begun = CounterMetricFamily(
        "longshore_infra_waits",
        "Waits of job run attempts for their infrastructure, by what they waited for.",
        labels=["reason"],
    )
    for reason in sorted(waits.waiting):
        waiting.add_metric([reason], waits.waiting[reason])
        begun.add_metric([reason], waits.waits[reason])
    yield from (waiting, begun)
    yield CounterMetricFamily(
        "longshore_infra_waits_exhausted",
        "Job run attempts that used up their infrastructure wait budget.",
        value=waits.exhausted,
    )

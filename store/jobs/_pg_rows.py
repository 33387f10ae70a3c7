"""Conversions between asyncpg rows and parameters and the job store's value objects
(PostgreSQL backend). jsonb parameters are JSON text; jsonb results arrive decoded (see
:mod:`store.db.postgres`)."""

from __future__ import annotations

import json
from typing import Any

from store.db.postgres import Row
from store.jobs import _extras as extras
from store.jobs._checks import artifacts_from_json, artifacts_json
from store.jobs.models import (
    JobDefinition,
    OutputLimitAction,
    Resources,
    Run,
    RunArtifact,
    RunFields,
    RunStatus,
    RunTrigger,
)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def definition_args(definition: JobDefinition) -> list[Any]:
    """Parameters $1-$21 of ``upsert_job``."""
    return [
        definition.name,
        definition.description,
        definition.source,
        _json(dict(definition.source_fields)),
        definition.path,
        definition.dockerfile,
        _json(list(definition.command)),
        _json(list(definition.env)),
        definition.queue,
        definition.retries,
        definition.timeout_seconds,
        definition.resources.memory_mb,
        float(definition.resources.cpus),
        definition.resources.pids_limit,
        definition.network,
        definition.artifacts_path,
        definition.output_bytes,
        OutputLimitAction(definition.on_output_limit).value,
        definition.user,
        _json(extras.grants_json(definition.secrets)),
        _json(extras.params_json(definition.params)),
    ]


def definition_from_row(row: Row) -> JobDefinition:
    return JobDefinition(
        name=row["name"],
        revision=row["revision"],
        description=row["description"],
        source=row["source"],
        source_fields=dict(row["source_fields"]),
        path=row["path"],
        dockerfile=row["dockerfile"],
        command=tuple(row["command"]),
        env=tuple(row["env"]),
        queue=row["queue"],
        retries=row["retries"],
        timeout_seconds=row["timeout_seconds"],
        resources=Resources(
            memory_mb=row["memory_mb"], cpus=float(row["cpus"]), pids_limit=row["pids_limit"]
        ),
        network=row["network"],
        artifacts_path=row["artifacts_path"],
        output_bytes=row["output_bytes"],
        on_output_limit=OutputLimitAction(row["on_output_limit"]),
        user=row["run_user"],
        secrets=extras.grants_from_json(row["secrets"]),
        params=extras.params_from_json(row["params"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def fields_args(fields: RunFields) -> list[Any]:
    """Parameters $5-$15 of ``transition_run``: ``None`` keeps the stored value."""
    artifacts = fields.get("artifacts")
    values = extras.values_json(fields.get("params"))
    return [
        fields.get("exit_code"),
        fields.get("error"),
        fields.get("commit_sha"),
        fields.get("source_sha256"),
        fields.get("image_id"),
        fields.get("output_bytes"),
        fields.get("output_truncated"),
        fields.get("build_log"),
        None if artifacts is None else _json(artifacts_json(artifacts)),
        fields.get("user"),
        None if values is None else _json(values),
    ]


def artifacts_arg(artifacts: tuple[RunArtifact, ...]) -> str:
    return _json(artifacts_json(artifacts))


def values_arg(values: object) -> str | None:
    """A run's parameter values as the jsonb text of ``insert_run`` (``None``: none)."""
    checked = extras.values_json(values)  # type: ignore[arg-type]
    return None if checked is None else _json(checked)


def run_from_row(row: Row) -> Run:
    return Run(
        run_id=row["run_id"],
        task_id=row["task_id"],
        job=row["job"],
        attempt=row["attempt"],
        trigger=RunTrigger(row["trigger_kind"]),
        actor=row["actor"],
        schedule_name=row["schedule_name"],
        status=RunStatus(row["status"]),
        queued_at=row["queued_at"],
        fetching_at=row["fetching_at"],
        building_at=row["building_at"],
        running_at=row["running_at"],
        finished_at=row["finished_at"],
        cancel_requested_at=row["cancel_requested_at"],
        exit_code=row["exit_code"],
        error=row["error"],
        commit_sha=row["commit_sha"],
        source_sha256=row["source_sha256"],
        image_id=row["image_id"],
        output_bytes=row["output_bytes"],
        output_truncated=row["output_truncated"],
        artifacts=artifacts_from_json(row["artifacts"]),
        build_log=row["build_log"],
        output_sha256=row["output_sha256"],
        user=row["run_user"],
        params=extras.values_from_json(row["params"]),
        updated_at=row["updated_at"],
    )

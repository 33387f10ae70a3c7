"""Conversions between SQLite rows and parameters and the job store's value objects.

Timestamps are INTEGER epoch microseconds (see :mod:`store.queue._sqlite_rows`, whose
helpers are reused); JSON arrays and objects are stored as text.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from store.jobs import _extras as extras
from store.jobs._checks import artifacts_from_json, artifacts_json
from store.jobs.models import (
    JobDefinition,
    OutputLimitAction,
    Resources,
    Run,
    RunFields,
    RunStatus,
    RunTrigger,
)
from store.queue._sqlite_rows import from_us, maybe_from_us, now_us, to_json

__all__ = ["definition_from_row", "definition_params", "fields_params", "now_us", "run_from_row"]

Params = dict[str, Any]


def definition_params(definition: JobDefinition, now: int) -> Params:
    """Parameters of ``upsert_job``."""
    return {
        "name": definition.name,
        "description": definition.description,
        "source": definition.source,
        "source_fields": to_json(dict(definition.source_fields)),
        "path": definition.path,
        "dockerfile": definition.dockerfile,
        "command": to_json(list(definition.command)),
        "env": to_json(list(definition.env)),
        "queue": definition.queue,
        "retries": definition.retries,
        "timeout_seconds": definition.timeout_seconds,
        "memory_mb": definition.resources.memory_mb,
        "cpus": definition.resources.cpus,
        "pids_limit": definition.resources.pids_limit,
        "network": definition.network,
        "artifacts_path": definition.artifacts_path,
        "output_bytes": definition.output_bytes,
        "on_output_limit": OutputLimitAction(definition.on_output_limit).value,
        "run_user": definition.user,
        "secrets": to_json(extras.grants_json(definition.secrets)),
        "params": to_json(extras.params_json(definition.params)),
        "now": now,
    }


def definition_from_row(row: sqlite3.Row) -> JobDefinition:
    return JobDefinition(
        name=row["name"],
        revision=row["revision"],
        description=row["description"],
        source=row["source"],
        source_fields=json.loads(row["source_fields"]),
        path=row["path"],
        dockerfile=row["dockerfile"],
        command=tuple(json.loads(row["command"])),
        env=tuple(json.loads(row["env"])),
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
        secrets=extras.grants_from_json(json.loads(row["secrets"])),
        params=extras.params_from_json(json.loads(row["params"])),
        created_at=from_us(row["created_at"]),
        updated_at=from_us(row["updated_at"]),
    )


def fields_params(fields: RunFields) -> Params:
    """The field parameters of ``transition_run``: ``None`` keeps the stored value."""
    artifacts = fields.get("artifacts")
    truncated = fields.get("output_truncated")
    values = extras.values_json(fields.get("params"))
    return {
        "exit_code": fields.get("exit_code"),
        "error": fields.get("error"),
        "commit_sha": fields.get("commit_sha"),
        "source_sha256": fields.get("source_sha256"),
        "image_id": fields.get("image_id"),
        "output_bytes": fields.get("output_bytes"),
        "output_truncated": None if truncated is None else int(truncated),
        "build_log": fields.get("build_log"),
        "artifacts": None if artifacts is None else to_json(artifacts_json(artifacts)),
        "run_user": fields.get("user"),
        "params": None if values is None else to_json(values),
    }


def values_param(values: object) -> str | None:
    """A run's parameter values as the JSON text of ``insert_run`` (``None``: none)."""
    checked = extras.values_json(values)  # type: ignore[arg-type]
    return None if checked is None else to_json(checked)


def run_from_row(row: sqlite3.Row) -> Run:
    return Run(
        run_id=row["run_id"],
        task_id=row["task_id"],
        job=row["job"],
        attempt=row["attempt"],
        trigger=RunTrigger(row["trigger_kind"]),
        actor=row["actor"],
        schedule_name=row["schedule_name"],
        status=RunStatus(row["status"]),
        queued_at=from_us(row["queued_at"]),
        fetching_at=maybe_from_us(row["fetching_at"]),
        building_at=maybe_from_us(row["building_at"]),
        running_at=maybe_from_us(row["running_at"]),
        finished_at=maybe_from_us(row["finished_at"]),
        cancel_requested_at=maybe_from_us(row["cancel_requested_at"]),
        exit_code=row["exit_code"],
        error=row["error"],
        commit_sha=row["commit_sha"],
        source_sha256=row["source_sha256"],
        image_id=row["image_id"],
        output_bytes=row["output_bytes"],
        output_truncated=bool(row["output_truncated"]),
        artifacts=artifacts_from_json(json.loads(row["artifacts"])),
        build_log=row["build_log"],
        output_sha256=row["output_sha256"],
        user=row["run_user"],
        params=extras.values_from_json(
            None if row["params"] is None else json.loads(row["params"])
        ),
        updated_at=from_us(row["updated_at"]),
    )

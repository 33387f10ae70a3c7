"""Storage rules shared by both backends: what the store refuses before writing, and the
normalisation of run fields (bounded texts, artifact lists)."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Final

from store.jobs._extras import values_json
from store.jobs.errors import InvalidJobRecord
from store.jobs.models import (
    BUILD_LOG_MAX_CHARS,
    DELETE_RUNS_MAX,
    ERROR_MAX_CHARS,
    JOB_NAME,
    JobDefinition,
    NewRun,
    OutputLimitAction,
    RunArtifact,
    RunFields,
    RunTrigger,
    bound_text,
)

RUN_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SOURCE_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")
_MAX_ARTIFACT_NAME: Final = 1024
_MAX_LABEL: Final = 256  # actor, schedule name, commit sha, image id

_TEXT_FIELDS: Final = ("commit_sha", "source_sha256", "image_id", "output_sha256", "user")


def check_job_name(name: object) -> str:
    if not isinstance(name, str) or not JOB_NAME.fullmatch(name):
        raise InvalidJobRecord(
            f"job name {name!r} is invalid: 1-63 of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name


def check_page(limit: int, offset: int) -> None:
    for label, value in (("limit", limit), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidJobRecord(f"{label} must be a non-negative integer, got {value!r}")


def check_retention(keep_last: int, keep_for: timedelta) -> None:
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        raise InvalidJobRecord(f"keep_last must be an integer of at least 1, got {keep_last!r}")
    if not isinstance(keep_for, timedelta) or keep_for < timedelta(0):
        raise InvalidJobRecord(f"keep_for must be a duration of at least 0, got {keep_for!r}")


def check_run_ids(run_ids: Sequence[str]) -> list[str]:
    ids = list(run_ids)
    if len(ids) > DELETE_RUNS_MAX:
        raise InvalidJobRecord(f"at most {DELETE_RUNS_MAX} runs per call, got {len(ids)}")
    if not all(isinstance(run_id, str) for run_id in ids):
        raise InvalidJobRecord("run ids must be strings")
    return ids


def run_listing(job: str | None, status: object) -> str:
    """The suffix of the listing queries for this filter shape (see ``jobs.sql``)."""
    return ("_of_job" if job is not None else "") + ("_in_status" if status is not None else "")


def check_definition(definition: JobDefinition) -> JobDefinition:
    """What the store needs of a definition: a valid name, known enum values, and a source
    name with string fields (which source names exist is the database's to say: each source
    type's migration registers its name in ``job_sources``)."""
    if not isinstance(definition, JobDefinition):
        raise InvalidJobRecord(f"expected a JobDefinition, got {type(definition).__name__}")
    check_job_name(definition.name)
    try:
        OutputLimitAction(definition.on_output_limit)
    except ValueError as exc:
        raise InvalidJobRecord(str(exc)) from None
    if not isinstance(definition.source, str) or not SOURCE_NAME.fullmatch(definition.source):
        raise InvalidJobRecord(f"source {definition.source!r} is not a source type's name")
    if not isinstance(definition.source_fields, Mapping) or not all(
        isinstance(key, str) for key in definition.source_fields
    ):
        raise InvalidJobRecord("source_fields must map field names to strings")
    texts: list[tuple[str, object]] = [
        (f.name, getattr(definition, f.name))
        for f in dataclasses.fields(definition)
        if isinstance(getattr(definition, f.name), str)
    ]
    texts.extend((f"source_fields.{key}", value) for key, value in definition.source_fields.items())
    for name in ("command", "env"):
        items = getattr(definition, name)
        if isinstance(items, str) or not isinstance(items, tuple | list):
            raise InvalidJobRecord(f"{name} must be a list of strings")
        texts.extend((f"{name}[{i}]", item) for i, item in enumerate(items))
    for label, value in texts:
        if not isinstance(value, str):
            raise InvalidJobRecord(f"{label} must be a string")
        # PostgreSQL text cannot hold NUL; refuse it on both backends alike.
        if "\0" in value:
            raise InvalidJobRecord(f"{label} must not contain NUL characters")
    return definition


def new_run_id(run: NewRun) -> str:
    """The id of a run about to be recorded (checked, or freshly made)."""
    if not isinstance(run, NewRun):
        raise InvalidJobRecord(f"expected a NewRun, got {type(run).__name__}")
    check_job_name(run.job)
    if isinstance(run.attempt, bool) or not isinstance(run.attempt, int) or run.attempt < 1:
        raise InvalidJobRecord(f"attempt must be a positive integer, got {run.attempt!r}")
    try:
        RunTrigger(run.trigger)
    except ValueError as exc:
        raise InvalidJobRecord(str(exc)) from None
    for label, value in (("actor", run.actor), ("schedule_name", run.schedule_name)):
        if value is not None and (not isinstance(value, str) or len(value) > _MAX_LABEL):
            raise InvalidJobRecord(f"{label} must be text of at most {_MAX_LABEL} characters")
    if run.run_id is None:
        return uuid.uuid4().hex
    if not isinstance(run.run_id, str) or not RUN_ID.fullmatch(run.run_id):
        raise InvalidJobRecord(
            f"run id {run.run_id!r} is invalid: 1-64 letters, digits, '_' or '-'"
        )
    return run.run_id


def check_artifacts(artifacts: Iterable[RunArtifact]) -> tuple[RunArtifact, ...]:
    """Artifacts with unique names, sizes >= 0 and lower-case sha256 digests."""
    checked: list[RunArtifact] = []
    seen: set[str] = set()
    for index, artifact in enumerate(artifacts):
        where = f"artifacts[{index}]"
        if not isinstance(artifact, RunArtifact):
            raise InvalidJobRecord(f"{where} must be a RunArtifact")
        name, size, digest = artifact.name, artifact.size_bytes, artifact.sha256
        if not isinstance(name, str) or not 0 < len(name) <= _MAX_ARTIFACT_NAME or "\0" in name:
            raise InvalidJobRecord(f"{where}: name must be 1-{_MAX_ARTIFACT_NAME} characters")
        if name in seen:
            raise InvalidJobRecord(f"{where}: name {name!r} appears twice")
        seen.add(name)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidJobRecord(f"{where}: size_bytes must be a non-negative integer")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest.lower()):
            raise InvalidJobRecord(f"{where}: sha256 must be 64 hexadecimal digits")
        checked.append(RunArtifact(name=name, size_bytes=size, sha256=digest.lower()))
    return tuple(checked)


def check_fields(fields: Mapping[str, Any]) -> RunFields:
    """The run fields of a transition, checked and normalised (texts bounded)."""
    unknown = set(fields) - set(RunFields.__annotations__)
    if unknown:
        raise InvalidJobRecord(f"runs have no field(s) {', '.join(sorted(unknown))}")
    out: RunFields = {}
    if "exit_code" in fields:
        out["exit_code"] = _int(fields, "exit_code", minimum=None)
    if "output_bytes" in fields:
        out["output_bytes"] = _int(fields, "output_bytes", minimum=0)
    if "output_truncated" in fields:
        if not isinstance(fields["output_truncated"], bool):
            raise InvalidJobRecord("output_truncated must be a bool")
        out["output_truncated"] = fields["output_truncated"]
    if "error" in fields:
        out["error"] = bound_text(_text(fields, "error"), ERROR_MAX_CHARS, keep="head")
    if "build_log" in fields:
        out["build_log"] = bound_text(_text(fields, "build_log"), BUILD_LOG_MAX_CHARS)
    for name in _TEXT_FIELDS:
        if name in fields:
            value = _text(fields, name)
            if len(value) > _MAX_LABEL:
                raise InvalidJobRecord(f"{name} must be at most {_MAX_LABEL} characters")
            out[name] = value
    if "artifacts" in fields:
        out["artifacts"] = check_artifacts(fields["artifacts"])
    if "params" in fields:
        out["params"] = values_json(fields["params"]) or {}
    return out


def _int(fields: Mapping[str, Any], name: str, *, minimum: int | None) -> int:
    value = fields[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobRecord(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidJobRecord(f"{name} must be at least {minimum}, got {value}")
    return value


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields[name]
    if not isinstance(value, str):
        raise InvalidJobRecord(f"{name} must be text, got {type(value).__name__}")
    # PostgreSQL text cannot hold NUL; keep both backends equal.
    return value.replace("\0", "\ufffd")


def artifacts_json(artifacts: Iterable[RunArtifact]) -> list[dict[str, Any]]:
    return [{"name": a.name, "size_bytes": a.size_bytes, "sha256": a.sha256} for a in artifacts]


def artifacts_from_json(data: Iterable[Mapping[str, Any]]) -> tuple[RunArtifact, ...]:
    return tuple(
        RunArtifact(name=item["name"], size_bytes=int(item["size_bytes"]), sha256=item["sha256"])
        for item in data
    )

"""What a run is given besides its image: its parameter values and its secrets.

:func:`run_params` resolves a run's parameter values (:mod:`jobrunner.params`) from what
its task carries: a schedule's values, or a manual run's overrides. :func:`gather` turns the
values and the job's secret grants into the container's extra environment, its files
under ``/run`` (``secrets/<file>``, mode 0400, and ``params.json``) and the values to mask
in its output; :func:`record_uses` appends one ``RunSecretUsed`` event per secret given
(naming the secret and how it was given, never its value).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from jobrunner.engine import RunFile
from jobrunner.errors import InvalidDefinition, UnknownSecret, describe
from jobrunner.params import param_environment, params_file, resolve
from store.events.models import EventType, NewEvent
from store.events.protocol import EventStore
from store.jobs.models import JobDefinition, ParamValue, Run, RunTrigger, SecretGrant
from store.secrets.errors import SecretNotFound
from store.secrets.protocol import SecretStore

logger = logging.getLogger(__name__)

EVENT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, kw_only=True)
class RunInputs:
    """A run's extra environment, its files under ``/run``, the values to mask and the
    grants used (for their events)."""

    env: tuple[str, ...] = ()
    files: tuple[RunFile, ...] = ()
    mask: tuple[bytes, ...] = ()
    used: tuple[SecretGrant, ...] = ()

    def __repr__(self) -> str:  # never the values
        return f"RunInputs(env={len(self.env)}, files={len(self.files)}, used={len(self.used)})"


def run_params(
    definition: JobDefinition, trigger: RunTrigger, given: Mapping[str, object] | None
) -> dict[str, ParamValue]:
    """The run's parameter values: ``given`` are a schedule's values for a scheduled run,
    a manual run's overrides otherwise. Raises ``InvalidParameter``."""
    if trigger is RunTrigger.SCHEDULE:
        return resolve(definition.params, scheduled=given)
    return resolve(definition.params, overrides=given)


async def gather(
    definition: JobDefinition,
    values: Mapping[str, ParamValue],
    secrets: SecretStore | None,
) -> RunInputs:
    """The inputs of a run of ``definition`` with parameter ``values``. Raises
    :class:`UnknownSecret` for a granted secret that no longer exists and
    :class:`InvalidDefinition` for a secret given as a variable that is not text."""
    env = list(param_environment(values))
    files: list[RunFile] = []
    if definition.params:
        files.append(RunFile(path="params.json", content=params_file(values), mode=0o444))
    grants = definition.secrets
    if not grants:
        return RunInputs(env=tuple(env), files=tuple(files))
    if secrets is None:
        raise InvalidDefinition("secrets", "this service has no secret store")
    try:
        revealed = await secrets.reveal([grant.name for grant in grants])
    except SecretNotFound as exc:
        index = next(i for i, g in enumerate(grants) if g.name == exc.name)
        raise UnknownSecret(f"secrets[{index}].name", exc.name) from None
    for index, grant in enumerate(grants):
        value = revealed[grant.name]
        if grant.env is not None:
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                text = "\0"
            if "\0" in text:
                raise InvalidDefinition(
                    f"secrets[{index}].env",
                    f"secret {grant.name!r} is not text without NUL: give it as a file",
                )
            env.append(f"{grant.env}={text}")
        else:
            files.append(RunFile(path=f"secrets/{grant.file}", content=value, mode=0o400))
    return RunInputs(
        env=tuple(env),
        files=tuple(files),
        mask=tuple(sorted(set(revealed.values()))),
        used=grants,
    )


async def record_uses(events: EventStore | None, run: Run, used: tuple[SecretGrant, ...]) -> None:
    """One ``RunSecretUsed`` event per secret given to ``run``: ``{secret, as, target}``."""
    if events is None:
        return
    for grant in used:
        how = "env" if grant.env is not None else "file"
        target = grant.env if grant.env is not None else f"/run/secrets/{grant.file}"
        event = NewEvent.run(
            EventType.RUN_SECRET_USED,
            job=run.job,
            run_id=run.run_id,
            secret=grant.name,
            **{"as": how, "target": target, "attempt": run.attempt},
        )
        try:
            await asyncio.wait_for(events.append(event), EVENT_TIMEOUT_SECONDS)
        except Exception as exc:
            logger.warning(
                "could not append a secret use event",
                extra={"run_id": run.run_id, "secret": grant.name, "error": describe(exc)},
            )

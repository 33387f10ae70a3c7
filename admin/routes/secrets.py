"""Secrets: list (names and dates only), set, delete.

A value is sent once (``PUT /secrets/{name}``) and never returned by any route, export,
event or log. The audit entry names the secret, never its value: the request body of these
mutations is not hashed into the entry (a hash of a short value could be guessed back), so
their ``payloadHash`` is that of an empty body. Setting and deleting is for admins; the
list (names, sizes, dates: a job definition names its secrets to viewers anyway) for
every role. A secret granted to a job cannot be deleted (409 naming the jobs).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from admin.auth import RequireViewer
from admin.config import Role
from admin.deps import JobsDep, SecretsDep
from admin.errors import Conflict, InvalidRequest, NotFound
from admin.mutations import Mutation, mutation
from admin.schemas_params import SecretBody, SecretDeleted, SecretList, SecretOne, SecretRequest
from store.jobs.protocol import JobStore
from store.secrets.errors import InvalidSecret
from store.secrets.protocol import check_name

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/secrets", tags=["secrets"])

Put = Annotated[
    Mutation, Depends(mutation("secret.set", Role.ADMIN, target="name", redact_body=True))
]
Delete = Annotated[
    Mutation,
    Depends(mutation("secret.delete", Role.ADMIN, target="name", risky=True, redact_body=True)),
]


@router.get("", response_model=SecretList)
async def list_secrets(_: RequireViewer, secrets: SecretsDep) -> SecretList:
    """Every secret by name: its size and dates, never its value."""
    return SecretList(secrets=[SecretBody.of(info) for info in await secrets.list_secrets()])


@router.put("/{name}", response_model=SecretOne, responses={201: {"model": SecretOne}})
async def put_secret(
    name: str, body: SecretRequest, audit: Put, secrets: SecretsDep
) -> JSONResponse:
    """Create (201) or replace (200) the secret's value; the answer shows no value."""
    try:
        info, created = await secrets.put(check_name(name), body.bytes_value())
    except InvalidSecret as exc:
        raise InvalidRequest(str(exc)) from None
    await audit.ok("created" if created else "updated")
    logger.info("secret set", extra={"secret": name, "actor": audit.actor})
    content = SecretOne(secret=SecretBody.of(info)).model_dump(by_alias=True)
    return JSONResponse(content, status_code=201 if created else 200)


@router.delete("/{name}", response_model=SecretDeleted)
async def delete_secret(
    name: str, audit: Delete, secrets: SecretsDep, jobs: JobsDep
) -> SecretDeleted:
    """Delete a secret no job is granted; 409 naming the jobs that are."""
    users = await jobs_granted(jobs, name)
    if users:
        raise Conflict(f"secret {name!r} is granted to job(s) {', '.join(users)}: revoke it first")
    if not await secrets.delete(name):
        raise NotFound(f"secret {name!r} not found")
    await audit.ok("deleted")
    return SecretDeleted(deleted=True, name=name)


async def jobs_granted(jobs: JobStore, name: str) -> list[str]:
    """The names of the jobs granted the secret ``name``."""
    found: list[str] = []
    offset = 0
    while True:
        page = await jobs.list_jobs(limit=500, offset=offset)
        found += [job.name for job in page.items if any(g.name == name for g in job.secrets)]
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return found

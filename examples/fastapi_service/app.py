"""The service: sign-ups that enqueue their welcome mail in the same transaction, a worker
in the background, a nightly schedule, and the Longshore admin API at /ops/longshore."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

import longshore
from examples.fastapi_service.handlers import WelcomeEmail, build_registry

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id serial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS referrals (
    user_id integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    referrer integer NOT NULL REFERENCES users (id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS sent_emails (user_id integer, email text, task_id bigint);
CREATE TABLE IF NOT EXISTS purges (at timestamptz DEFAULT now(), deleted integer);
"""


class Signup(BaseModel):
    email: str
    referrer: int | None = None


def parse_tokens(text: str) -> dict[str, tuple[str, str]]:
    """``name:secret:role,...`` into ``{secret: (name, role)}``."""
    tokens: dict[str, tuple[str, str]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, secret, role = entry.split(":")
        tokens[secret] = (name, role)
    return tokens


def create_app(
    database_url: str, data_dir: Path, ops_tokens: dict[str, tuple[str, str]]
) -> FastAPI:
    state: dict[str, Any] = {}
    registry = build_registry(lambda: state["pool"])
    client = longshore.Client(database_url, events_dir=data_dir / "events")
    worker = longshore.Worker(client, registry, concurrency=4, cron={"purge_signups": "0 3 * * *"})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
            await pool.execute(SCHEMA)
            state["pool"] = pool
            async with client, worker.running():
                yield

    def ops_auth(request: Request) -> tuple[str, str] | None:
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        return ops_tokens.get(secret) if scheme.lower() == "bearer" else None

    app = FastAPI(title="signups", lifespan=lifespan)
    app.mount("/ops/longshore", longshore.admin_app(client, auth=ops_auth, registry=registry))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/signups", status_code=201)
    async def sign_up(body: Signup) -> dict[str, int]:
        # The user, their welcome mail and the referral commit together or not at all.
        async with state["pool"].acquire() as connection, connection.transaction():
            try:
                user_id = await connection.fetchval(
                    "INSERT INTO users (email) VALUES ($1) RETURNING id", body.email
                )
            except asyncpg.UniqueViolationError:
                raise HTTPException(409, "already signed up") from None
            welcome = WelcomeEmail(user_id=user_id, email=body.email)
            result = await client.enqueue_fast(
                "send_welcome", welcome, key=f"welcome:{user_id}", connection=connection
            )
            if body.referrer is not None:
                try:
                    await connection.execute(
                        "INSERT INTO referrals (user_id, referrer) VALUES ($1, $2)",
                        user_id,
                        body.referrer,
                    )
                except asyncpg.ForeignKeyViolationError:
                    raise HTTPException(400, "unknown referrer") from None
        return {"userId": user_id, "taskId": result.task.id}

    @app.get("/signups/{user_id}")
    async def signup(user_id: int) -> dict[str, Any]:
        row = await state["pool"].fetchrow(
            "SELECT u.email, count(s.*) AS sent FROM users u "
            "LEFT JOIN sent_emails s ON s.user_id = u.id WHERE u.id = $1 GROUP BY u.email",
            user_id,
        )
        if row is None:
            raise HTTPException(404, "no such user")
        return {"email": row["email"], "welcomeSent": row["sent"] > 0}

    return app


def app_from_environment() -> FastAPI:
    """``DATABASE_URL`` (PostgreSQL), ``EXAMPLE_DATA_DIR``, ``EXAMPLE_OPS_TOKENS``."""
    return create_app(
        os.environ["DATABASE_URL"],
        Path(os.environ.get("EXAMPLE_DATA_DIR", "./example-data")),
        parse_tokens(os.environ.get("EXAMPLE_OPS_TOKENS", "")),
    )

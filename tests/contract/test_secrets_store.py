"""Secrets in the store, on every backend: sealed at rest (the database file or table holds
no value in clear), listed without values, revealed by name, deleted; job definitions keep
their secret grants and parameter specs, runs their parameter values."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import stat
from pathlib import Path

import pytest

from store.jobs.models import (
    JobDefinition,
    NewRun,
    ParamSpec,
    ParamType,
    RunStatus,
    SecretGrant,
)
from store.secrets.crypto import SecretBox, load_or_create_key
from store.secrets.errors import InvalidSecret, SecretKeyError, SecretNotFound

VALUE = b"s3cr3t-value-\x00\xff-\xe2\x82\xac"


def _secret_store(stores, box):
    if stores.db.__class__.__name__.startswith("Sqlite"):
        from store.secrets.sqlite import SqliteSecretStore

        return SqliteSecretStore(stores.db, box)
    from store.secrets.postgres import PostgresSecretStore

    return PostgresSecretStore(stores.db, box)


@pytest.fixture
def box(tmp_path):
    return SecretBox(load_or_create_key(tmp_path / "keys" / "secrets.key"))


async def test_put_list_reveal_delete(job_stores, box, backend, queue_location):
    secrets = _secret_store(job_stores, box)
    info, created = await secrets.put("db-password", VALUE)
    assert created
    assert info.name == "db-password"
    assert info.size_bytes == len(VALUE)
    again, created = await secrets.put("db-password", VALUE + b"2")
    assert not created
    assert again.created_at == info.created_at
    await secrets.put("api.token", b"x")
    listed = await secrets.list_secrets()
    assert [s.name for s in listed] == ["api.token", "db-password"]
    assert not any(hasattr(s, "value") for s in listed)
    assert await secrets.existing(["db-password", "nope"]) == {"db-password"}
    assert await secrets.reveal(["db-password"]) == {"db-password": VALUE + b"2"}
    with pytest.raises(SecretNotFound, match="nope"):
        await secrets.reveal(["db-password", "nope"])
    assert await secrets.delete("api.token") is True
    assert await secrets.delete("api.token") is False
    assert [s.name for s in await secrets.list_secrets()] == ["db-password"]
    if backend == "sqlite":
        await job_stores.db.close()
        for name in os.listdir(os.path.dirname(queue_location)):
            path = os.path.join(os.path.dirname(queue_location), name)
            if os.path.isfile(path):
                with open(path, "rb") as data:
                    assert b"s3cr3t-value" not in data.read(), name
    else:
        raw = await job_stores.db.fetchval("SELECT ciphertext FROM secrets")
        assert b"s3cr3t-value" not in bytes(raw)


async def test_bad_names_and_values_are_refused_without_showing_the_value(job_stores, box):
    secrets = _secret_store(job_stores, box)
    for name in ("", "-x", "a b", "x" * 64, "a/b"):
        with pytest.raises(InvalidSecret, match="secret name"):
            await secrets.put(name, b"v")
    with pytest.raises(InvalidSecret, match="empty"):
        await secrets.put("ok", b"")
    with pytest.raises(InvalidSecret) as refused:
        await secrets.put("ok", b"hidden-value" * 10000)
    assert "hidden-value" not in str(refused.value)


async def test_another_key_does_not_open_a_value(job_stores, box, tmp_path):
    await _secret_store(job_stores, box).put("k", VALUE)
    other = SecretBox(load_or_create_key(tmp_path / "other.key"))
    with pytest.raises(SecretKeyError, match="does not decrypt"):
        await _secret_store(job_stores, other).reveal(["k"])


def test_the_key_file_is_made_private_and_a_readable_one_is_refused(tmp_path):
    path = tmp_path / "data" / "secrets.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    path.chmod(0o644)
    with pytest.raises(SecretKeyError, match="read by others"):
        load_or_create_key(path)


async def test_definitions_keep_grants_and_params_and_runs_their_values(job_stores):
    definition = JobDefinition(
        name="with-secrets",
        source="tarball_path",
        source_fields={"tarball_path": "/srv/job.tar"},
        secrets=(
            SecretGrant(name="db-password", env="DB_PASSWORD"),
            SecretGrant(name="tls.key", file="tls.key"),
        ),
        params=(
            ParamSpec(name="region", type=ParamType.ENUM, choices=("eu", "us"), default="eu"),
            ParamSpec(name="count", type=ParamType.INTEGER, required=True, overridable=True),
            ParamSpec(name="tag", pattern="v[0-9]+", description="a tag"),
        ),
    )
    saved, _ = await job_stores.jobs.upsert(definition)
    got = await job_stores.jobs.get("with-secrets")
    assert got.secrets == definition.secrets
    assert got.params == definition.params
    assert saved.params == definition.params
    plain, _ = await job_stores.jobs.upsert(dataclasses.replace(definition, secrets=(), params=()))
    assert plain.secrets == ()
    assert plain.params == ()

    run = await job_stores.runs.create(NewRun(job="with-secrets", params={"count": 3}))
    assert run.params == {"count": 3}
    later = await job_stores.runs.transition(
        run.run_id, RunStatus.FETCHING, params={"count": 3, "region": "eu", "on": True}
    )
    assert later.params == {"count": 3, "region": "eu", "on": True}
    bare = await job_stores.runs.create(NewRun(job="with-secrets"))
    assert bare.params is None


def test_a_box_on_a_key_file_makes_it_only_when_first_needed(tmp_path):
    path = tmp_path / "lazy" / "secrets.key"
    box = SecretBox(path)
    assert not path.exists()
    sealed = box.seal("name", b"value")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SecretBox(path).open("name", sealed) == b"value"
    with pytest.raises(SecretKeyError):
        SecretBox(path).open("other-name", sealed)


def _key_of(path: str) -> str:
    return load_or_create_key(Path(path)).hex()


def test_processes_starting_together_all_get_the_one_key(tmp_path):
    """``serve`` and workers started at once on a fresh data dir: none may read the key
    file between its creation and its content (an empty file is "not a key")."""
    with concurrent.futures.ProcessPoolExecutor(4) as pool:
        for round_ in range(60):
            path = str(tmp_path / f"round-{round_}" / "secrets.key")
            keys = list(pool.map(_key_of, [path] * 8))
            assert len(set(keys)) == 1, keys
            assert keys[0] == load_or_create_key(Path(path)).hex()

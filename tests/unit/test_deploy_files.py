"""The deployment files (Dockerfile, compose.yaml, .dockerignore) keep their promises:
non-root, a health check, ``longshore serve`` over mTLS on 0.0.0.0:8081, git in the image,
every package copied into the build, the socket, the volumes and the socket's group in
compose. They cannot be built here (no image registry), so their structure is checked."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


@pytest.fixture(scope="module")
def final_stage() -> list[tuple[str, str]]:
    """The instructions of the Dockerfile's last stage (the image that ships)."""
    steps = instructions((ROOT / "Dockerfile").read_text())
    starts = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    assert starts, "the Dockerfile has no FROM"
    return steps[starts[-1] :]


@pytest.fixture(scope="module")
def image_env(final_stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in final_stage:
        if keyword == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_image_is_based_on_a_slim_python_and_installs_git(
    final_stage: list[tuple[str, str]],
) -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.\d+-slim", text)
    runs = " ".join(args for keyword, args in final_stage if keyword == "RUN")
    assert re.search(r"apt-get install [^&]*\bgit\b", runs)
    assert re.search(r"apt-get install [^&]*\bca-certificates\b", runs)


def test_the_build_copies_every_package_of_the_project() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    text = (ROOT / "Dockerfile").read_text()
    for name in [*packages, "pyproject.toml", "README.md"]:
        assert re.search(rf"^COPY .*\b{re.escape(name)}\b", text, re.M), f"{name} not copied"
    assert re.search(r"pip install \.", text)


def test_the_image_runs_longshore_serve_as_a_non_root_user(
    final_stage: list[tuple[str, str]],
) -> None:
    users = [args for keyword, args in final_stage if keyword == "USER"]
    assert users, "the image must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    cmd = [args for keyword, args in final_stage if keyword == "CMD"]
    assert json.loads(cmd[-1]) == ["longshore", "serve"]
    assert not [args for keyword, args in final_stage if keyword == "ENTRYPOINT"]


def test_the_admin_api_listens_on_all_interfaces_only_with_mtls(
    image_env: dict[str, str],
) -> None:
    assert image_env["WORKER_ADMIN_HTTP_ADDR"] == "0.0.0.0:8081"
    assert image_env["WORKER_ADMIN_TLS_CERT"] == "/certs/server.pem"
    assert image_env["WORKER_ADMIN_TLS_KEY"] == "/certs/server-key.pem"
    assert image_env["WORKER_ADMIN_TLS_CA"] == "/certs/ca.pem"
    assert image_env["WORKER_DATA_DIR"] == "/data"


def test_the_health_check_calls_health_over_mtls(final_stage: list[tuple[str, str]]) -> None:
    checks = [args for keyword, args in final_stage if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD ")
    assert "--interval=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    code = argv[2]
    compile(code, "<healthcheck>", "exec")  # a syntax error would make it always unhealthy
    assert "https://127.0.0.1:8081/admin/v1/health" in code
    assert "client-healthcheck.pem" in code
    assert "client-healthcheck-key.pem" in code
    assert "load_cert_chain" in code
    assert "ca.pem" in code


def test_compose_runs_the_service_with_postgres_the_socket_and_volumes(
    compose: dict[str, Any], image_env: dict[str, str]
) -> None:
    services = compose["services"]
    assert set(services) >= {"longshore", "postgres"}
    service = services["longshore"]
    assert service["build"] == "."
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    mounts = dict(volume.rsplit(":", 1) for volume in service["volumes"])
    assert mounts["/var/run/docker.sock"] == "/var/run/docker.sock"
    certs_dir = str(Path(image_env["WORKER_ADMIN_TLS_CERT"]).parent)
    assert mounts["certs"] == certs_dir
    assert mounts["data"] == image_env["WORKER_DATA_DIR"]
    assert {"certs", "data", "pgdata"} <= set(compose["volumes"])
    assert any(port.endswith(":8081") for port in service["ports"])

    url = service["environment"]["WORKER_DATABASE_URL"]
    assert url.startswith("postgresql://")
    assert "@postgres:5432/" in url
    postgres = services["postgres"]
    assert postgres["healthcheck"]["test"]
    assert "ports" not in postgres
    assert any(m.endswith(":/var/lib/postgresql/data") for m in postgres["volumes"])


def test_compose_adds_the_user_to_the_sockets_group_from_a_variable(
    compose: dict[str, Any],
) -> None:
    group_add = compose["services"]["longshore"]["group_add"]
    assert len(group_add) == 1
    assert re.fullmatch(r"\$\{DOCKER_GID(:?[?-].*)?\}", group_add[0])
    assert compose["services"]["longshore"].get("user") in (None, "longshore", "10001")


def test_compose_sets_only_documented_settings(compose: dict[str, Any]) -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text()
    for name in compose["services"]["longshore"]["environment"]:
        if name.startswith("WORKER_"):
            assert f"`{name}`" in documented, f"{name} is not in docs/configuration.md"


def test_the_build_context_leaves_out_state_and_secrets_but_not_the_sources() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"longshore-data", ".env", ".venv", ".git", "**/*.pem"} <= patterns
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    for needed in [*packages, "pyproject.toml", "README.md"]:
        assert needed not in patterns

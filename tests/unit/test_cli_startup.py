"""The ``longshore`` command starts without the service's runtime: importing the CLI, and
building its whole command tree (``--help``), load no web framework, Docker SDK, database
driver, scheduler, console, HTTP client or settings model (pydantic itself is Typer's: it
converts option values with it). Those are imported by the
commands that use them (``serve``, ``worker``, ``images prune``, the client commands when
they call the API).

A structural check in a fresh interpreter each time, not a speed measurement
(``python -m bench.cli_startup`` measures the start-up time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Heavy at import and not needed to start: each one is loaded by the commands that use it.
NOT_AT_START = (
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "prometheus_client",
    "docker",
    "asyncpg",
    "aiosqlite",
    "apscheduler",
    "admin.app",
    "admin.console",
    "admin.routes",
    "jobrunner.docker_engine",
    "jobrunner.runner",
    "jobrunner.sources.registry",
    "scheduler.service",
    "service.api_listener",
    "service.api_server",
    "service.runtime",
    "service.lifecycle",
    "service.settings",
    "service.backends",
    "store.events",
    "pydantic_settings",
    "httpx",
    "rich",
    "yaml",
    "cryptography",
)

REPORT = "import json, sys; print(json.dumps(sorted(sys.modules)), file=sys.stderr)"


def loaded_modules(code: str, tmp_path: Path) -> set[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), WORKER_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(
        name
        for name in modules
        if any(name == banned or name.startswith(banned + ".") for banned in NOT_AT_START)
    )


def test_importing_the_cli_loads_none_of_the_runtime(tmp_path: Path) -> None:
    modules = loaded_modules(f"import service.cli\n{REPORT}", tmp_path)
    assert "service.cli.tasks" in modules  # the check saw the command modules
    assert heavy(modules) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["jobs", "--help"],
        ["runs", "--help"],
        ["tasks", "--help"],
        ["images", "prune", "--help"],
        ["serve", "--help"],
    ],
)
def test_building_the_command_tree_loads_none_of_the_runtime(
    tmp_path: Path, argv: list[str]
) -> None:
    """Typer reads every command's parameter types when it builds the command tree: those
    types stay cheap to import."""
    code = (
        "import sys\n"
        "from service.cli import main\n"
        f"sys.argv = ['longshore', *{argv!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        f"{REPORT}"
    )
    modules = loaded_modules(code, tmp_path)
    assert "typer.core" in modules  # the command tree was built
    assert heavy(modules) == []


def test_a_store_command_loads_the_store_and_not_the_service(tmp_path: Path) -> None:
    """``tasks stats`` on the embedded store opens the database (settings, SQLite) but not
    the admin API, the scheduler or the Docker engine."""
    code = (
        "import sys\n"
        "from service.cli import main\n"
        "sys.argv = ['longshore', 'tasks', 'stats', '--json']\n"
        "main()\n"
        f"{REPORT}"
    )
    modules = loaded_modules(code, tmp_path)
    assert {"service.settings", "store.db.sqlite"} <= modules  # it did open the store
    loaded = heavy(modules)
    allowed = ("service.settings", "service.backends", "pydantic_settings", "cryptography")
    assert [
        name for name in loaded if not any(name == a or name.startswith(a + ".") for a in allowed)
    ] == []

"""The README's serve command, as written there: ``./scripts/serve``.

It sets up (idempotent: the virtualenv of this checkout is already installed), makes sure the
Docker engine runs, and starts ``longshore serve`` on the embedded store. The admin API
answers the README's ``curl`` with the token kept in the data dir (mode 0600), and Ctrl-C
(SIGINT) stops the service cleanly. The data dir and the port are the test's own
(``WORKER_DATA_DIR``, ``WORKER_ADMIN_HTTP_ADDR``) so the checkout is left untouched.
"""

from __future__ import annotations

import signal
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import Longshore, Process
from tests.acceptance.test_serve_api import free_port, wait_listening

pytestmark = [pytest.mark.slow, pytest.mark.docker]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_readme_serve_command_answers_with_its_token_and_stops_on_ctrl_c(
    longshore: Longshore, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **longshore.env,
        "WORKER_ADMIN_HTTP_ADDR": f"127.0.0.1:{port}",
        "WORKER_SHUTDOWN_GRACE_SECONDS": "1",
    }
    logs = longshore.logs
    with (
        (logs / "serve-script.out").open("wb") as out,
        (logs / "serve-script.err").open("wb") as err,
    ):
        popen = subprocess.Popen(
            [str(ROOT / "scripts" / "serve")], env=env, stdout=out, stderr=err, cwd=tmp_path
        )
    longshore.started.append(popen)
    serve = Process(popen=popen, name="serve-script", logs=logs)
    wait_listening(serve, port)

    stderr = (logs / "serve-script.err").read_text(errors="replace")
    assert "without a Docker engine" not in stderr, serve.output()
    token_file = tmp_path / "data" / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    url = f"http://127.0.0.1:{port}/admin/v1/health"
    answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert httpx.get(url, timeout=10).status_code == 401

    serve.signal(signal.SIGINT)
    assert serve.wait(timeout=30) == 0, serve.output()
    assert "Traceback" not in (logs / "serve-script.err").read_text(errors="replace")

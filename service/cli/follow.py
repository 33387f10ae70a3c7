"""Following a run's output live (``jobs run --follow``, ``runs output --follow``).

The API streams ``GET /runs/{id}/output?follow=true`` as server-sent events: ``output``
events carry the text, each with its durable event id, and an ``end`` event closes the
stream when the run finished. A stream cut short (the service restarted, the network
dropped) is resumed with ``Last-Event-ID`` so no line is printed twice or lost.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from service.cli.api import ApiClient, ApiError, decode, iter_sse
from service.cli.terminal import block

RECONNECT_SECONDS = 1.0
RECONNECT_ATTEMPTS = 60


def output_text(data: Any) -> str:
    """The text of an ``output`` event's data (a JSON string or an object holding it)."""
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        for key in ("text", "chunk", "line", "data"):
            value = data.get(key)
            if isinstance(value, str):
                return value
    return ""


def follow_run(client: ApiClient, run_id: str, *, raw: bool = False) -> str | None:
    """Print the output of ``run_id`` as it is written, until the run ends; return its
    final status. Terminal controls are escaped unless ``raw``."""
    import httpx  # when a run is followed, not when ``longshore`` starts

    stream_timeout = httpx.Timeout(30.0, connect=10.0, read=None)
    last_id: str | None = None
    failures = 0
    while True:
        params: dict[str, Any] = {"follow": "true"}
        if last_id is not None:
            params["lastEventId"] = last_id
        try:
            with client.stream(
                f"/runs/{run_id}/output", params=params, timeout=stream_timeout
            ) as response:
                failures = 0
                for event, data, event_id in iter_sse(response):
                    if event_id:
                        last_id = event_id
                    if event == "output":
                        text = output_text(decode(data))
                        sys.stdout.write(text if raw else block(text))
                        sys.stdout.flush()
                    elif event == "end":
                        return _final_status(client, run_id, decode(data))
        except ApiError as exc:
            if exc.status is not None:  # the API answered: not a dropped connection
                raise
            failures += 1
            if failures > RECONNECT_ATTEMPTS:
                raise
        except httpx.HTTPError:
            failures += 1
            if failures > RECONNECT_ATTEMPTS:
                raise ApiError(f"lost the output stream of run {run_id}") from None
        # The stream ended without an end event: reconnect where it stopped.
        time.sleep(RECONNECT_SECONDS)


def _final_status(client: ApiClient, run_id: str, data: Any) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("status"), str):
        return str(data["status"])
    body = client.get(f"/runs/{run_id}")
    run = body.get("run", {}) if isinstance(body, dict) else {}
    status = run.get("status")
    return str(status) if status is not None else None

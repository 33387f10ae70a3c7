"""Metrics: a JSON snapshot (``GET /metrics``) and the Prometheus text format
(``GET /metrics/prometheus``, or ``GET /metrics?format=prometheus``); see
:mod:`admin.metrics` for the families.

The JSON shape is ``{"atMs": <epoch ms>, "metrics": {<family>: {"type": "gauge" | "counter"
| "histogram", "help": "...", "samples": [{"name": "...", "labels": {...}, "value": n}]}}}``:
the same families and samples as the Prometheus text (a counter's samples are named
``<family>_total``, a histogram's ``_bucket``, ``_count``, ``_sum``).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from admin.auth import RequireViewer
from admin.errors import InvalidRequest
from admin.metrics import PROMETHEUS_CONTENT_TYPE, AdminMetrics, metrics_of

router = APIRouter(prefix="/metrics", tags=["metrics"])

FORMATS = ("json", "prometheus")

_PROMETHEUS_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {PROMETHEUS_CONTENT_TYPE: {"schema": {"type": "string"}}},
        "description": "Prometheus text exposition format 0.0.4",
    }
}


async def _refreshed(request: Request) -> AdminMetrics:
    metrics = metrics_of(request.scope)
    if metrics is None:  # only if the app was built without the admin middleware
        raise RuntimeError("the admin app has no metrics")
    await metrics.refresh()
    return metrics


def _prometheus(metrics: AdminMetrics) -> Response:
    return Response(metrics.prometheus_text(), media_type=PROMETHEUS_CONTENT_TYPE)


@router.get(
    "",
    responses={
        200: {
            "content": {
                "application/json": {},
                PROMETHEUS_CONTENT_TYPE: {"schema": {"type": "string"}},
            },
            "description": "The JSON snapshot, or with format=prometheus the text format",
        }
    },
)
async def get_metrics(request: Request, _: RequireViewer, format: str = "json") -> Response:
    """The metrics as JSON (default) or, with ``format=prometheus``, as Prometheus text."""
    if format not in FORMATS:
        raise InvalidRequest(f"format: must be one of {', '.join(FORMATS)}, got {format!r}")
    metrics = await _refreshed(request)
    if format == "prometheus":
        return _prometheus(metrics)
    return JSONResponse({"atMs": int(time.time() * 1000), "metrics": metrics.snapshot()})


@router.get("/prometheus", response_class=Response, responses=_PROMETHEUS_RESPONSE)
async def get_metrics_prometheus(request: Request, _: RequireViewer) -> Response:
    """The metrics in the Prometheus text format (version 0.0.4)."""
    return _prometheus(await _refreshed(request))

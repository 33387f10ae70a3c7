"""``python -m examples.fastapi_service``: serve the example on loopback with uvicorn."""

from __future__ import annotations

import logging
import os

import uvicorn

from examples.fastapi_service.app import app_from_environment

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    port = int(os.environ.get("EXAMPLE_PORT", "8000"))
    uvicorn.run(app_from_environment(), host="127.0.0.1", port=port, log_level="info")

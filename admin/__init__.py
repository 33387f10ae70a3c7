"""Longshore's admin API (SPEC §7): a FastAPI app built by :func:`admin.app.create_app`.

The app receives its collaborators (task queue, audit log, :class:`admin.config.AdminConfig`)
from ``service/``, the composition root; nothing here is built at import time.
"""

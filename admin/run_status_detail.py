"""A run's ``statusDetail``: what an unfinished run waits for beyond its status.

A run that waits for its infrastructure (``jobrunner.infra_wait``) appends a ``RunWaiting``
event at each try, saying when the next one comes (``retryInSeconds``). The run is taken
to be waiting while its latest such event is not followed by a status event and its next
try is due less than :data:`GRACE_SECONDS` ago (a wait that ended in success appends
nothing: the detail then lapses by itself).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from store.events import EventStore
from store.events.models import EventType

PAGE = 1000
PAGES = 5
"""At most this many pages of a run's events are read (a run with more live output than
that shows no detail)."""
GRACE_SECONDS = 5.0


async def waiting_detail(
    events: EventStore, run_id: str, now: datetime | None = None
) -> str | None:
    """``waiting for the engine`` (or the network, disk space) while the run waits, else
    ``None`` (see the module docstring)."""
    detail: str | None = None
    due: datetime | None = None
    after = 0
    for _ in range(PAGES):
        page = await events.by_run(run_id, after_id=after, limit=PAGE)
        for event in page:
            if event.type == EventType.RUN_WAITING:
                text = event.data.get("detail")
                retry_in = event.data.get("retryInSeconds")
                seconds = float(retry_in) if isinstance(retry_in, int | float) else 0.0
                detail = text if isinstance(text, str) else None
                due = event.at + timedelta(seconds=seconds + GRACE_SECONDS)
            elif event.type != EventType.RUN_OUTPUT_EMITTED:
                detail, due = None, None
        if len(page) < PAGE:
            break
        after = page[-1].id
    if detail is None or due is None or due < (now or datetime.now(UTC)):
        return None
    return detail

"""Run errors as the API shows them: the failing step, without the host's layout.

A run's ``error`` is made by the job runner as ``<ErrorType>: <message>`` (the type names the
failing step: ``FetchFailed``, ``BuildFailed``, ...), and the message may quote what Docker,
git or the resolver said: host paths (the run's work directory under the data dir,
``/var/lib/docker/overlay2/...``) and network addresses (the resolver's ``127.0.0.11:53``).
Viewers have no business knowing either, so every place the API shows a run error (run
bodies, the seed items, the run output stream's ``end`` event, a job task's last error)
passes it through :func:`shown_error`: an absolute path of two or more parts keeps only its
last part (``…/Dockerfile``), and an IPv4 address becomes ``<address>``. The stored text is
unchanged (operators read it in the logs).
"""

from __future__ import annotations

import re

_PATH = re.compile(r"(?<![\w.:/~-])(?:/[\w.@+%=,-]+){2,}/?")
"""An absolute POSIX path of two or more parts, not the path of a URL (``host/path``)."""

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])")


def _last_part(match: re.Match[str]) -> str:
    parts = [part for part in match.group(0).split("/") if part]
    return f"…/{parts[-1]}"


def shown_error(error: str | None) -> str | None:
    """``error`` without host paths and addresses (``None`` stays ``None``)."""
    if not error:
        return error
    return _IPV4.sub("<address>", _PATH.sub(_last_part, error))

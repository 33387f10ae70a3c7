"""One ``docker build`` call and what its stream says, on the thread that reads it.

The build goes to the engine's classic builder (``POST /build``) with the job's limits on
every ``RUN`` step: memory (swap included), a CPU quota, network ``none`` and, when
``jobrunner.docker_engine.build_cgroup`` made one, a cgroup parent that carries the pids
limit. The SDK's ``APIClient.build`` only passes memory, CPU shares and cpusets, so the
request is made here with the same low-level calls it uses.

While it reads the stream, :class:`BuildProgress` keeps the log's tail, the container of the
step that is running (``---> Running in <id>``) and the images the build made (so that a
build that failed or was stopped can remove them: nothing of it stays on the engine).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from docker.types.daemon import CancellableStream  # type: ignore[import-untyped, unused-ignore]

from jobrunner.errors import BuildFailed

_CPU_PERIOD_US: Final = 100_000
_STEP: Final = re.compile(r"^Step \d+/\d+ : (\S+)", re.IGNORECASE)
_RUNNING: Final = re.compile(r"^ ---> Running in ([0-9a-f]{12,64})\s*$")
_REMOVING: Final = re.compile(r"^Removing intermediate container ([0-9a-f]{12,64})\s*$")
_IMAGE: Final = re.compile(r"^ ---> ([0-9a-f]{12,64})\s*$")
_CACHED: Final = " ---> Using cache"


@dataclass(frozen=True, kw_only=True)
class BuildLimits:
    """What every ``RUN`` step of a build gets (``None``: the engine's default)."""

    memory_mb: int | None = None
    cpus: float | None = None
    network: str = "none"
    cgroup_parent: str | None = None

    def params(self) -> dict[str, Any]:
        """The ``/build`` query parameters of these limits."""
        params: dict[str, Any] = {"networkmode": self.network}
        if self.memory_mb is not None:
            memory = self.memory_mb * 1024 * 1024
            params.update(memory=memory, memswap=memory)  # memswap = memory: no swap
        if self.cpus is not None:
            params.update(cpuperiod=_CPU_PERIOD_US, cpuquota=int(self.cpus * _CPU_PERIOD_US))
        if self.cgroup_parent is not None:
            params["cgroupparent"] = self.cgroup_parent
        return params


class LogTail:
    """The last ``limit`` characters of a build log."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[str] = []
        self._size = 0

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size > 2 * self._limit:
            joined = "".join(self._parts)[-self._limit :]
            self._parts, self._size = [joined], len(joined)

    def text(self) -> str:
        return "".join(self._parts)[-self._limit :]

    def tail(self, chars: int = 4000) -> str:
        """A suffix for error messages: the end of the log."""
        text = self.text()[-chars:].rstrip()
        return f"\n--- end of the build log ---\n{text}" if text else ""


@dataclass
class BuildProgress:
    """What the stream of one build said so far; shared with the event loop (``lock``)."""

    log: LogTail
    image_id: str | None = None
    error: str | None = None
    running: str | None = None
    """The container of the ``RUN`` step under way, if any."""
    started: float = field(default_factory=time.time)
    """When the build began (epoch seconds). ``running`` and ``created`` are read from the
    stream, where a ``RUN`` step's own output can print lines that look like the engine's:
    only a container or image the engine made since then is removed as a leftover
    (:func:`made_since`)."""
    created: list[str] = field(default_factory=list)
    """Images this build made (steps that were not a ``FROM`` nor taken from the cache)."""
    stream: CancellableStream | None = None
    on_created: Callable[[str], None] | None = None
    """Told of each image in ``created`` as it is made (from the build's thread)."""
    leftovers_kept: bool = False
    """Whether images of ``created`` could not be removed after a failed or stopped build."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _pending_line: str = ""
    _skip_next_image: bool = False

    def close(self) -> None:
        """Shut the connection down (from any thread): the engine then stops the build,
        killing and removing the container of the running step."""
        with self.lock:
            stream = self.stream
        if stream is not None:
            with contextlib.suppress(OSError):  # already gone
                stream.close()

    def read(self, item: Mapping[str, Any]) -> None:
        if "stream" in item:
            text = str(item["stream"])
            self.log.add(text)
            self._lines(text)
        if "error" in item and self.error is None:
            self.error = str(item["error"])
            self.log.add(f"ERROR: {self.error}\n")
        aux = item.get("aux")
        if isinstance(aux, dict) and "ID" in aux:
            self.image_id = str(aux["ID"])

    def _lines(self, text: str) -> None:
        text = self._pending_line + text
        *lines, self._pending_line = text.split("\n")
        for line in lines:
            self._line(line)

    def _line(self, line: str) -> None:
        step = _STEP.match(line)
        if step is not None:
            self._skip_next_image = step.group(1).upper() == "FROM"
            return
        if line.startswith(_CACHED):
            self._skip_next_image = True
            return
        found = _RUNNING.match(line)
        if found is not None:
            with self.lock:
                self.running = found.group(1)
            return
        found = _REMOVING.match(line)
        if found is not None:
            with self.lock:
                self.running = None
            return
        found = _IMAGE.match(line)
        if found is not None:
            if not self._skip_next_image:
                with self.lock:
                    self.created.append(found.group(1))
                if self.on_created is not None:
                    self.on_created(found.group(1))
            self._skip_next_image = False


def stream_build(
    api: Any,
    context: Any,
    dockerfile: str,
    labels: Mapping[str, str],
    limits: BuildLimits,
    progress: BuildProgress,
) -> None:
    """Build (blocking) and feed every item of the stream to ``progress``; returns when the
    stream ends. Raises what the SDK raises (``APIError`` for a refused request) and, for a
    stream the engine ended without an image, nothing: ``progress`` says what happened."""
    params: dict[str, Any] = {
        "dockerfile": dockerfile,
        "rm": True,
        "forcerm": True,
        "pull": False,
        "nocache": False,
        "q": False,
        "labels": json.dumps(dict(labels)),
        **limits.params(),
    }
    response = api._post(
        api._url("/build"),
        data=context,
        params=params,
        headers={"Content-Type": "application/tar"},
        stream=True,
        timeout=None,
    )
    # Before the stream is wrapped: ``CancellableStream`` ends quietly on an ``OSError``,
    # and the SDK's ``APIError`` is one.
    api._raise_for_status(response)
    stream = CancellableStream(api._stream_helper(response, decode=True), response)
    with progress.lock:
        progress.stream = stream
    for item in stream:
        progress.read(item)


def made_since(inspected: Mapping[str, Any], since: float) -> bool:
    """Whether an engine object (``inspect_container``/``inspect_image``'s answer) was
    created at or after ``since``: one made before a build began is never its leftover,
    whatever the build's output said."""
    text = str(inspected.get("Created") or "")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp() >= since
    except ValueError:
        return False


def describe_failure(progress: BuildProgress) -> BuildFailed:
    """The permanent error of a build whose stream reported an error."""
    return BuildFailed(f"the image does not build: {progress.error}{progress.log.tail()}")

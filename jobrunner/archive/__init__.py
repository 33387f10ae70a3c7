"""Untrusted archives: checked entry by entry, turned into a normalised build context.

- :mod:`~jobrunner.archive.reading` — telling gzip from tar, reading as a capped stream;
- :mod:`~jobrunner.archive.entries` — the rules every entry must follow;
- :mod:`~jobrunner.archive.context` — writing the build context from the checked entries.

Everything here blocks on file I/O and decompression; async callers use ``asyncio.to_thread``.
The context file is meant to be handed to Docker as is (``APIClient.build(fileobj=...,
custom_context=True, dockerfile=report.dockerfile)``), never extracted on the host. The
package's public names are re-exported here, so callers need not know which module holds
them.
"""

from jobrunner.archive.context import (
    CONTEXT_MTIME,
    ArchiveReport,
    BuildContext,
    build_context_file,
    inspect_archive,
    read_context_file,
    write_build_context,
)
from jobrunner.archive.reading import detect_compression

__all__ = [
    "CONTEXT_MTIME",
    "ArchiveReport",
    "BuildContext",
    "build_context_file",
    "detect_compression",
    "inspect_archive",
    "read_context_file",
    "write_build_context",
]

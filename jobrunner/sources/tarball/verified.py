"""The end of every tarball fetch: bytes whose SHA256 is known."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["VerifiedTarball"]


@dataclass(frozen=True, kw_only=True)
class VerifiedTarball:
    """Bytes whose SHA256 is known (and matched the pin, when there was one)."""

    path: Path
    """The verified bytes. For URL sources (and paths given a ``dest_dir``) a private copy in
    ``dest_dir``, which the caller owns and deletes."""
    sha256: str
    size: int
    origin: str
    """The URL or the relative path the job named."""
    final_url: str | None = None
    """The URL the bytes came from after redirects (None for a cache hit or a path)."""
    from_cache: bool = False

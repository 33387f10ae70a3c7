"""The rules every entry of an untrusted archive must follow, checked from its header
before a byte of its data is read:

- **names**: not empty, no NUL, no backslash, no control character, valid UTF-8, not absolute,
  no ``..`` component, at most 255 bytes a component and 4096 in all. ``.`` components and
  repeated slashes are dropped (``./a//b`` is ``a/b``); names are checked *after* PAX and GNU
  long-name headers have been applied, so a PAX header cannot rename an entry to a bad name;
- **types**: regular files, directories and symbolic links only. Device nodes, fifos, sparse
  files (the old GNU type and the PAX ``GNU.sparse.*`` forms, which tarfile would expand:
  a few hundred bytes can stand for hundreds of megabytes of zeros) and contiguous files
  are refused, and so are **all hard links** (even to an entry inside):
  git and GitHub archives never contain them, and a hard link is only ever safe when its
  target has been checked, which a stream reader cannot always know;
- **symbolic links**: the target is relative, and resolving it from the link's own directory,
  following the archive's other links on the way (at most 40), never leaves the archive root
  nor, for an entry of the build context, the context root (:func:`check_links`). A target
  may dangle;
- **duplicates and shadowing**: a name appears once (``a/b`` and ``./a/b`` are the same name),
  and no entry lies under a name that is a file or a symbolic link (no writing through links);
- **caps** (:class:`~jobrunner.config.SourceLimits`): the entry count, each file's size and
  the total of the file sizes are checked from the headers, before the data is read.

A broken rule raises :class:`~jobrunner.errors.UnsafeArchive` naming the entry and the rule.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from jobrunner.archive.reading import REFUSED_TYPES
from jobrunner.config import SourceLimits
from jobrunner.errors import UnsafeArchive

__all__ = ["Entry", "Kind", "Walk", "bad_text", "check_links", "check_member", "walk_archive"]

Kind = Literal["file", "dir", "symlink"]

_MAX_NAME_BYTES: Final = 4096
_MAX_COMPONENT_BYTES: Final = 255
_MAX_LINK_HOPS: Final = 40


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    kind: Kind
    size: int
    executable: bool
    target: str


@dataclass
class Walk:
    """What pass one learns about the archive, entry by entry."""

    limits: SourceLimits
    entries: list[Entry] = field(default_factory=list)
    kinds: dict[str, Kind] = field(default_factory=dict)
    parents: set[str] = field(default_factory=set)
    count: int = 0
    total: int = 0


def refuse(raw_name: str, rule: str) -> UnsafeArchive:
    return UnsafeArchive(f"archive entry {raw_name!r}: {rule}")


def bad_text(text: str) -> str | None:
    """Why ``text`` cannot be a path in an archive we accept, or None."""
    if not text:
        return "empty"
    if "\x00" in text:
        return "contains NUL"
    if "\\" in text:
        return "contains a backslash"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "contains a control character"
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if len(encoded) > _MAX_NAME_BYTES:
        return f"is longer than {_MAX_NAME_BYTES} bytes"
    return None


def normalise_name(raw: str) -> str:
    """The canonical form of an entry name (``""`` for the root itself)."""
    problem = bad_text(raw)
    if problem:
        raise refuse(raw, f"name {problem}")
    if raw.startswith("/"):
        raise refuse(raw, "absolute names are not allowed")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise refuse(raw, "names with a '..' component are not allowed")
    if any(len(part.encode()) > _MAX_COMPONENT_BYTES for part in parts):
        raise refuse(raw, f"a name component is longer than {_MAX_COMPONENT_BYTES} bytes")
    return "/".join(parts)


def ancestors(name: str) -> Iterator[str]:
    parent = posixpath.dirname(name)
    while parent:
        yield parent
        parent = posixpath.dirname(parent)


def check_member(info: tarfile.TarInfo, walk: Walk) -> Entry | None:
    """Check one entry against every rule; None for the archive's root directory entry."""
    raw = info.name
    limits = walk.limits
    walk.count += 1
    if walk.count > limits.max_entries:
        raise refuse(raw, f"more than {limits.max_entries} entries; rule: entry count cap")
    refused = REFUSED_TYPES.get(info.type)
    if refused is None and (
        info.sparse is not None or any(key.startswith("GNU.sparse.") for key in info.pax_headers)
    ):
        refused = REFUSED_TYPES[tarfile.GNUTYPE_SPARSE]
    if refused is not None:
        target = f" (to {info.linkname!r})" if info.type == tarfile.LNKTYPE else ""
        raise refuse(raw, refused + target)
    kind: Kind
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = "file"
    elif info.type == tarfile.DIRTYPE:
        kind = "dir"
    elif info.type == tarfile.SYMTYPE:
        kind = "symlink"
    else:
        raise refuse(raw, f"entry type {info.type!r} is not allowed")
    name = normalise_name(raw)
    if not name:
        if kind != "dir":
            raise refuse(raw, "name is empty")
        return None
    size = info.size if kind == "file" else 0
    if size > limits.max_file_bytes:
        raise refuse(raw, f"{size} bytes; rule: at most {limits.max_file_bytes} bytes a file")
    walk.total += size
    if walk.total > limits.max_total_bytes:
        raise refuse(raw, f"total size passes {limits.max_total_bytes} bytes; rule: total size cap")
    target = ""
    if kind == "symlink":
        target = info.linkname
        problem = bad_text(target)
        if problem:
            raise refuse(raw, f"symbolic link target {problem}")
        if target.startswith("/"):
            raise refuse(raw, f"symbolic link to absolute path {target!r} is not allowed")
        if posixpath.normpath(posixpath.join(posixpath.dirname(name), target)).startswith(".."):
            raise refuse(raw, f"symbolic link to {target!r} points outside the archive")
    if name in walk.kinds:
        raise refuse(raw, f"duplicate entry (as {name!r})")
    if kind != "dir" and name in walk.parents:
        raise refuse(raw, f"a {kind} where other entries have it as their directory")
    for ancestor in ancestors(name):
        above = walk.kinds.get(ancestor)
        if above is not None and above != "dir":
            raise refuse(raw, f"lies inside {ancestor!r}, which is a {above}")
        walk.parents.add(ancestor)
    walk.kinds[name] = kind
    return Entry(name=name, kind=kind, size=size, executable=bool(info.mode & 0o111), target=target)


def stays_inside(link: str, links: dict[str, str]) -> bool:
    """Whether resolving the symbolic link ``link`` never goes above the root.

    Resolution follows the other links in ``links`` (names and targets relative to the same
    root), as the kernel would, so ``a -> b/..`` where ``b`` is itself a link is judged by
    where ``b`` leads rather than by the text.
    """
    position: list[str] = link.split("/")[:-1]
    pending: list[str] = links[link].split("/")
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not position:
                return False
            position.pop()
            continue
        candidate = "/".join([*position, part])
        target = links.get(candidate)
        if target is None:
            position.append(part)
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS or target.startswith("/"):
            return False
        pending = target.split("/") + pending
    return True


def check_links(entries: list[Entry], root: str, scope: str) -> None:
    prefix = f"{root}/" if root else ""
    links = {
        entry.name[len(prefix) :]: entry.target
        for entry in entries
        if entry.kind == "symlink" and entry.name.startswith(prefix)
    }
    for name, target in links.items():
        if not stays_inside(name, links):
            raise refuse(prefix + name, f"symbolic link to {target!r} points outside the {scope}")


def walk_archive(tar: tarfile.TarFile, limits: SourceLimits) -> Walk:
    """Check every entry of ``tar``, in order."""
    walk = Walk(limits=limits)
    for info in tar:
        entry = check_member(info, walk)
        if entry is not None:
            walk.entries.append(entry)
    return walk

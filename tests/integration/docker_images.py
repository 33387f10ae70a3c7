"""Local base images for tests that need Docker (no registry can be reached here).

``ensure_busybox_image()`` imports a tiny root filesystem — ``/bin/busybox`` from the host's
busybox-static and a link per applet — as ``longshore-test/busybox:latest`` through the docker
SDK (DESIGN.md §5). It is idempotent and cheap: the image carries the SHA256 of the busybox
binary as a label and is only re-imported when that binary changes.

``build_context_tar()`` makes a build context (a plain tar) from a mapping of names to file
contents, e.g. a Dockerfile ``FROM longshore-test/busybox:latest`` and a script.

``docker_client()`` returns a pinged low-level client or fails the test (never skips) with a
message saying how to get an engine.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

BUSYBOX_IMAGE = "longshore-test/busybox:latest"
BUSYBOX_BINARY = Path("/bin/busybox")
_DIGEST_LABEL = "longshore-test.busybox-sha256"
ROOT = Path(__file__).resolve().parents[2]


def docker_client() -> Any:
    """A pinged ``docker.APIClient`` (``DOCKER_HOST`` or the default socket); fails the test
    with a clear message when no engine answers."""
    import docker

    try:
        api = docker.APIClient(version="auto")
        api.ping()
    except Exception as exc:
        pytest.fail(
            f"a Docker engine is needed but none answers ({exc}); run scripts/docker-up "
            "(installs docker.io and busybox-static, starts dockerd) or set DOCKER_HOST",
            pytrace=False,
        )
    return api


def _rootfs_tar(busybox: bytes) -> bytes:
    applets = subprocess.run(
        [str(BUSYBOX_BINARY), "--list"], capture_output=True, text=True, check=True, timeout=10
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "tmp", "etc", "root"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("bin/busybox")
        info.size = len(busybox)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(busybox))
        for applet in sorted(set(applets) - {"busybox"}):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        group = b"root:x:0:\nnogroup:x:65534:\n"
        for name, content in (("etc/passwd", passwd), ("etc/group", group)):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def ensure_busybox_image(api: Any) -> str:
    """Import ``longshore-test/busybox:latest`` unless an import of this very busybox binary
    is already there; return the image id."""
    if not BUSYBOX_BINARY.is_file():
        pytest.fail(
            f"{BUSYBOX_BINARY} is missing: apt-get install busybox-static (scripts/docker-up)",
            pytrace=False,
        )
    busybox = BUSYBOX_BINARY.read_bytes()
    digest = hashlib.sha256(busybox).hexdigest()
    for image in api.images(name=BUSYBOX_IMAGE):
        if (image.get("Labels") or {}).get(_DIGEST_LABEL) == digest:
            return str(image["Id"])
    repository, tag = BUSYBOX_IMAGE.rsplit(":", 1)
    api.import_image_from_data(
        _rootfs_tar(busybox),
        repository=repository,
        tag=tag,
        changes=[f"LABEL {_DIGEST_LABEL}={digest}", 'CMD ["sh"]'],
    )
    return str(api.inspect_image(BUSYBOX_IMAGE)["Id"])


def build_context_tar(files: Mapping[str, bytes | str], destination: Path) -> Path:
    """Write a build context tar holding ``files`` (name -> content; ``.sh`` files are made
    executable) to ``destination`` and return it."""
    with tarfile.open(destination, mode="w") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return destination

"""The image of the containers that hold job artifacts directories (see
:mod:`jobrunner.docker_engine.artifact_holders`).

A holder only has to stay alive, doing nothing, so its image is one static program that
waits for signals forever, and an empty ``/artifacts``. No image on the engine can be
assumed to have such a program (a job's image may be ``FROM scratch``, and nothing can be
pulled), so Longshore makes the program itself: an ELF executable of a few dozen bytes of
machine code (x86-64: ``pause()`` in a loop; AArch64, which has no ``pause``:
``ppoll(NULL, 0, NULL, NULL)`` in a loop), imported as a one-layer image, once per engine,
tagged by its digest.
"""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile
from typing import Any, Final

import docker  # type: ignore[import-untyped, unused-ignore]

from jobrunner.engine import LABEL_HOLDER

HOLDER_REPOSITORY: Final = "longshore/artifacts-holder"
HOLDER_PROGRAM: Final = "/hold"
HOLDER_MOUNT: Final = "/artifacts"

_LOAD_ADDRESS: Final = 0x400000
_HEADERS: Final = 64 + 56  # the ELF header and one program header
_CODE: Final = {
    # mov eax, 34 (pause); syscall; jmp back to the mov
    "x86_64": (62, bytes.fromhex("b8220000000f05ebf7")),
    # mov x8, #73 (ppoll); mov x0..x3, #0; svc #0; b back to the first mov
    "aarch64": (
        183,
        struct.pack(
            "<7I",
            0xD2800928,
            0xD2800000,
            0xD2800001,
            0xD2800002,
            0xD2800003,
            0xD4000001,
            0x17FFFFFA,
        ),
    ),
}
_ALIASES: Final = {"amd64": "x86_64", "arm64": "aarch64"}


def holder_program(architecture: str) -> bytes | None:
    """The static ELF executable that waits forever, for the engine's ``Architecture``
    (``None`` for one not supported)."""
    machine_code = _CODE.get(_ALIASES.get(architecture, architecture))
    if machine_code is None:
        return None
    machine, code = machine_code
    size = _HEADERS + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)  # 64-bit, little-endian, current version
    header = struct.pack(
        "<16sHHIQQQIHHHHHH",
        ident,
        2,  # ET_EXEC
        machine,
        1,
        _LOAD_ADDRESS + _HEADERS,  # entry: the code right after the headers
        64,  # program headers follow the ELF header
        0,
        0,
        64,
        56,
        1,
        0,
        0,
        0,
    )
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, _LOAD_ADDRESS, _LOAD_ADDRESS, size, size, 0x1000)
    return header + program + code


def ensure_holder_image(api: Any) -> str | None:
    """The holder image for this engine (imported when missing); ``None`` when the engine's
    architecture has no holder program."""
    program = holder_program(str(api.info().get("Architecture") or ""))
    if program is None:
        return None
    reference = f"{HOLDER_REPOSITORY}:{hashlib.sha256(program).hexdigest()[:16]}"
    try:
        return str(api.inspect_image(reference)["Id"])
    except docker.errors.NotFound:
        pass
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        directory = tarfile.TarInfo(HOLDER_MOUNT.lstrip("/"))
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o1777
        tar.addfile(directory)
        binary = tarfile.TarInfo(HOLDER_PROGRAM.lstrip("/"))
        binary.size = len(program)
        binary.mode = 0o555
        tar.addfile(binary, io.BytesIO(program))
    repository, tag = reference.split(":")
    api.import_image_from_data(
        layer.getvalue(),
        repository=repository,
        tag=tag,
        changes=[f'CMD ["{HOLDER_PROGRAM}"]', f"LABEL {LABEL_HOLDER}=image"],
    )
    return str(api.inspect_image(reference)["Id"])

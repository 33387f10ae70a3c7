"""The hardened environment of every git process, and what it trusts.

**Environment** (:func:`git_env`): built from scratch, nothing inherited (no ``GIT_*``,
proxy, ``SSL_*`` or locale variables of the service reach git), with
``GIT_CONFIG_NOSYSTEM=1``, ``GIT_CONFIG_GLOBAL=/dev/null``, ``HOME``/``XDG_CONFIG_HOME`` in
the fetch's temporary directory, ``GIT_TERMINAL_PROMPT=0``, ``GIT_ASKPASS=/bin/false``,
``GIT_ALLOW_PROTOCOL=https`` (plus ``http`` when allowed), ``LC_ALL=C``. GitPython is not
used: its ``Git.execute`` always starts from ``os.environ``, and a variable such as
``GIT_SSL_NO_VERIFY`` cannot be neutralised by overriding it (git disables certificate checks
when it is set at all, even to an empty string).

**Options** (:func:`git_config_args`, ``-c`` before the subcommand):
``protocol.allow=never`` + ``protocol.https.allow=always``, ``http.followRedirects=false``,
``http.sslVerify=true``, ``credential.helper=`` (none), ``core.hooksPath=/dev/null``, no
submodules, no automatic gc, protocol v2; and ``http.curloptResolve``
(:func:`curl_resolve_entry`) pinning the host to exactly the addresses that were checked, so
a DNS answer that changes between the check and git's own lookup (rebinding) cannot send it
elsewhere.

**Trusted CAs** (:func:`trust_options`): git trusts what the tarball source trusts, the
system's CAs plus ``ca_file`` when set. ``http.sslCAInfo`` *replaces* the CA file curl would
use (with OpenSSL builds, that drops the public CAs), so with ``ca_file`` git is given a bundle
written for the fetch: the system bundle (:func:`system_ca_bundle`) followed by ``ca_file``;
without it, the system bundle itself. ``http.sslCAPath`` is then pointed at an empty directory:
Debian's libcurl-gnutls also loads its compiled-in directory (``/etc/ssl/certs``, the same CAs
again as ~430 files) on every connection, which costs ~50 ms a connection and adds nothing the
bundle lacks. Where no system bundle file exists, curl's defaults are left alone (and
``ca_file`` alone is the CA file).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from jobrunner.errors import FetchFailed
from jobrunner.sources.netcheck import IPAddress, parse_address

__all__ = [
    "curl_resolve_entry",
    "git_config_args",
    "git_env",
    "system_ca_bundle",
    "trust_options",
    "write_ca_bundle",
]

_SAFE_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
_SYSTEM_BUNDLES: Final = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS, BSDs
)


def git_env(
    home: Path,
    *,
    allow_http: bool = False,
    git_dir: Path | None = None,
    ceiling: Path | None = None,
) -> dict[str, str]:
    """The whole environment of a git process: built from scratch, nothing inherited."""
    env = {
        "PATH": _SAFE_PATH,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "LC_ALL": "C",
        "LANG": "C",
        "LANGUAGE": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_ALLOW_PROTOCOL": "https:http" if allow_http else "https",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_NO_LAZY_FETCH": "1",
    }
    if git_dir is not None:
        env["GIT_DIR"] = str(git_dir)
    if ceiling is not None:
        # Repository discovery (for commands run outside our bare repository) stops here.
        env["GIT_CEILING_DIRECTORIES"] = str(ceiling)
    return env


def git_config_args(
    *,
    allow_http: bool = False,
    ca_bundle: Path | None = None,
    ca_dir: Path | None = None,
    resolve: str | None = None,
) -> list[str]:
    """The ``-c`` options given to every git command (before the subcommand)."""
    settings = [
        "protocol.allow=never",
        "protocol.https.allow=always",
        f"protocol.http.allow={'always' if allow_http else 'never'}",
        "protocol.file.allow=never",
        "protocol.ext.allow=never",
        "protocol.version=2",
        "http.followRedirects=false",
        "http.sslVerify=true",
        "credential.helper=",
        "core.askPass=/bin/false",
        "core.hooksPath=/dev/null",
        "core.fsmonitor=false",
        "fetch.recurseSubmodules=false",
        "submodule.recurse=false",
        "transfer.fsckObjects=true",
        "fetch.writeCommitGraph=false",
        "gc.auto=0",
        "maintenance.auto=false",
        "init.defaultBranch=main",
        "tar.umask=022",
    ]
    if ca_bundle is not None:
        settings.append(f"http.sslCAInfo={ca_bundle}")
    if ca_dir is not None:
        settings.append(f"http.sslCAPath={ca_dir}")
    if resolve is not None:
        settings.append(f"http.curloptResolve={resolve}")
    args: list[str] = []
    for setting in settings:
        args += ["-c", setting]
    return args


def curl_resolve_entry(host: str, port: int, addresses: Sequence[IPAddress]) -> str | None:
    """The ``http.curloptResolve`` value pinning ``host:port`` to ``addresses`` (None for a
    host that is an IP address already)."""
    if parse_address(host) is not None or not addresses:
        return None
    spelled = ",".join(f"[{a}]" if a.version == 6 else str(a) for a in addresses)
    return f"{host}:{port}:{spelled}"


def system_ca_bundle() -> Path | None:
    """The system's CA bundle file (what git trusts when no ``http.sslCAInfo`` is set)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, *_SYSTEM_BUNDLES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def trust_options(ca_file: Path | None, workspace: Path) -> tuple[Path | None, Path | None]:
    """``(http.sslCAInfo, http.sslCAPath)`` for a fetch (blocking: may write a bundle and an
    empty directory in ``workspace``); see the module docstring."""
    system = system_ca_bundle()
    if system is None:
        return (ca_file.absolute() if ca_file is not None else None), None
    bundle = system if ca_file is None else write_ca_bundle(ca_file, workspace / "ca-bundle.pem")
    empty = workspace / "no-ca-dir"
    empty.mkdir(mode=0o700, exist_ok=True)
    return bundle, empty


def write_ca_bundle(ca_file: Path, dest: Path) -> Path:
    """Write the system bundle followed by ``ca_file`` to ``dest`` (blocking)."""
    system = system_ca_bundle()
    try:
        extra = ca_file.read_bytes()
    except OSError as exc:
        raise FetchFailed(f"cannot read the CA file {ca_file} (WORKER_JOB_CA_FILE): {exc}") from exc
    parts = [system.read_bytes()] if system is not None else []
    parts.append(extra)
    dest.write_bytes(b"\n".join(part.rstrip(b"\n") + b"\n" for part in parts))
    return dest

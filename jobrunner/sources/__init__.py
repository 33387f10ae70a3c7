"""Where a job's build context comes from: a git tag, an HTTPS tarball or a local tarball.

Each source ends in bytes whose identity is known (a commit SHA or a tarball's SHA256) before
anything is built from them. Host and address rules shared by the network sources live in
:mod:`jobrunner.sources.netcheck`; tarballs in :mod:`jobrunner.sources.tarball`.
"""

"""The tarball sources: an HTTPS URL, or a file under ``WORKER_JOB_TARBALL_DIR``.

Both end in a :class:`~jobrunner.sources.tarball.verified.VerifiedTarball`: a private copy of
the exact bytes whose SHA256 was computed (and, when the job pins one, compared) before
anything else looks at them. Its entries are checked later, by :mod:`jobrunner.archive`, when
the build context is made.

- :mod:`~jobrunner.sources.tarball.download` — from a URL, every hop checked;
- :mod:`~jobrunner.sources.tarball.local` — from a file on this host;
- :mod:`~jobrunner.sources.tarball.sources` — the ``tarball_url`` and ``tarball_path``
  source types.
"""

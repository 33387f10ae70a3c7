"""Where a job's build context comes from: one module (or package) per source type.

Every source type implements the :class:`~jobrunner.sources.base.Source` contract and is
listed once in :mod:`jobrunner.sources.registry`; nothing outside this package switches on
the source type. Each source ends in bytes whose identity is known (a commit SHA or a
tarball's SHA256) before anything is built from them.

- :mod:`~jobrunner.sources.base` — the contract;
- :mod:`~jobrunner.sources.registry` — the source types by name, and the rules their fields
  share;
- :mod:`~jobrunner.sources.netcheck` — scheme, host and address rules of the network sources;
- :mod:`~jobrunner.sources.git` — ``git_tag``;
- :mod:`~jobrunner.sources.tarball` — ``tarball_url`` and ``tarball_path``.
"""

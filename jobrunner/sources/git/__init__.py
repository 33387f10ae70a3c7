"""The ``git_tag`` source: the ``git archive`` of the commit a tag names, fetched over HTTPS.

The git binary runs as asyncio subprocesses with fixed argument lists and an environment
built from nothing; every rule is checked before git runs and again on every fetch.

- :mod:`~jobrunner.sources.git.names` — what a tag and a repository URL may look like;
- :mod:`~jobrunner.sources.git.environment` — git's environment, options and trusted CAs;
- :mod:`~jobrunner.sources.git.process` — running git in its own process group, and reading
  its errors;
- :mod:`~jobrunner.sources.git.refs` — resolving a tag to a commit without fetching;
- :mod:`~jobrunner.sources.git.cache` — archives of commits already fetched;
- :mod:`~jobrunner.sources.git.fetch` — fetching and archiving a commit, under one deadline;
- :mod:`~jobrunner.sources.git.source` — the source type itself.
"""

"""Secrets: values encrypted at rest (:mod:`store.secrets.crypto`), kept by name in the
database (:mod:`store.secrets.sqlite`, :mod:`store.secrets.postgres`); the contract is
:class:`store.secrets.protocol.SecretStore`."""

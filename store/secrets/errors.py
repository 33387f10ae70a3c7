"""Errors of the secret store, under :class:`store.errors.StoreError`.

StoreError
 └── SecretStoreError        something about secrets
      ├── InvalidSecret      a name or value the store cannot keep (a ValueError)
      ├── SecretNotFound     no secret with that name
      └── SecretKeyError     the key file is unusable, or a value does not decrypt
                             with it (another key, or tampered with)
"""

from __future__ import annotations

from store.errors import StoreError


class SecretStoreError(StoreError):
    """Something about secrets went wrong."""


class InvalidSecret(SecretStoreError, ValueError):
    """A secret name or value breaks a rule; the message names it (never the value)."""


class SecretNotFound(SecretStoreError):
    """No secret with the given name exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no secret called {name!r}")
        self.name = name


class SecretKeyError(SecretStoreError):
    """The secrets key cannot be read or made, or a stored value does not decrypt with it."""

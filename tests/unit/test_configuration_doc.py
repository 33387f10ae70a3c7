"""docs/configuration.md names every setting: each field of :class:`Settings` is read from
``WORKER_<FIELD>``, and an operator finds each in the document."""

from __future__ import annotations

from pathlib import Path

from service.settings import ENV_PREFIX, Settings

CONFIGURATION = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_in_the_configuration_document() -> None:
    documented = CONFIGURATION.read_text()
    names = [ENV_PREFIX + field.upper() for field in Settings.model_fields]
    assert len(names) > 50
    missing = [name for name in names if f"`{name}`" not in documented]
    assert missing == [], "add them to docs/configuration.md"

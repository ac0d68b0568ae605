"""Where finished export files live: `ferry.storage` plugins (built in: local)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferry import plugins
from ferry.storage.base import Storage

if TYPE_CHECKING:
    from ferry.config import Settings

__all__ = ["Storage", "open_storage"]


def open_storage(settings: Settings) -> Storage:
    """The storage plugin named by `export.storage`, set up from the settings."""
    factory = plugins.load("ferry.storage", settings.export.storage, allow_path=True)
    storage: Storage = factory.from_settings(settings)
    return storage

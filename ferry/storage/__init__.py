"""Where finished export files live: `ferry.storage` plugins (built in: local), built by
`App.storage()` (the one named by `export.storage`) like every other plugin."""

from __future__ import annotations

from ferry.storage.base import Storage

__all__ = ["Storage"]

"""The application context handed to every plugin: settings and shared resources.

Resources are created on first use, so a CLI command that only signs a token never opens
the database, and a test can build an App around its own engine.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from ferry.auth import TokenSigner, load_or_create_key, read_key
from ferry.config import Settings
from ferry.datasets import load_dataset
from ferry.datasets.spec import Dataset
from ferry.db.engine import make_engine


@dataclass
class App:
    settings: Settings
    _engine: Engine | None = None
    _extra: dict[str, Any] = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            url = self.settings.database_url()
            kwargs: dict[str, Any] = {}
            if not url.startswith("sqlite"):
                kwargs["pool_size"] = self.settings.database.pool_size
            self._engine = make_engine(url, **kwargs)
        return self._engine

    def dataset(self, name: str = "") -> Dataset:
        """The dataset spec `name` (default: the configured one) from `ferry.datasets`."""
        return load_dataset(name or self.settings.dataset)

    @functools.cached_property
    def _signer(self) -> TokenSigner:
        a = self.settings.auth
        return TokenSigner(
            load_or_create_key(self.settings.path(a.signing_key_file)), a.issuer, a.audience
        )

    def signer(self) -> TokenSigner:
        """The signer for this installation's tokens (the key is created when missing)."""
        return self._signer

    def local_token(self, subject: str = "", role: int = 3) -> str | None:
        """The CLI's token: FERRY_TOKEN when set; else a short-lived token signed with the
        local key when it is readable (a laptop just works); else None."""
        if os.environ.get("FERRY_TOKEN"):
            return os.environ["FERRY_TOKEN"]
        a = self.settings.auth
        key = read_key(self.settings.path(a.signing_key_file))
        if key is None:
            return None
        signer = TokenSigner(key, a.issuer, a.audience)
        who = subject or f"cli:{os.environ.get('USER', 'local')}"
        return signer.issue(who, role, dt.timedelta(seconds=a.cli_token_ttl_seconds))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

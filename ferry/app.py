"""The application context handed to every plugin: settings and shared resources.

Resources are created on first use, so a CLI command that only signs a token never opens
the database, and a test can build an App around its own engine.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Engine

from ferry import plugins
from ferry.auth.keys import KeyFileError, KeySetFile, SigningKey, ensure_keys
from ferry.auth.tokens import TokenIssuer, TokenVerifier
from ferry.config import Settings
from ferry.datasets import load_dataset
from ferry.datasets.spec import Dataset
from ferry.db.engine import make_engine


@dataclass
class App:
    settings: Settings
    _engine: Engine | None = None
    _extra: dict[str, Any] = field(default_factory=dict)
    # Plugin instances built by `plugin()`, in the order they were set up.
    _plugins: dict[tuple[str, str], Any] = field(default_factory=dict)
    _redis: Any = None

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
        if name:
            return load_dataset(name)
        return load_dataset(self.settings.dataset, "dataset", from_config=True)

    def key_paths(self) -> tuple[Path, Path]:
        """(the private signing key file, the public key set file), resolved."""
        a = self.settings.auth
        return self.settings.path(a.signing_key_file), self.settings.path(a.key_set_path())

    def issuer(self) -> TokenIssuer:
        """The token issuer: the private key, only the auth service (and the CLI on a
        laptop) uses it. Created with the key set on first use when create_keys is on;
        read again when the key file changes (after `ferry keys rotate`)."""
        a = self.settings.auth
        private, key_set = self.key_paths()
        try:
            mtime = private.stat().st_mtime_ns
        except OSError:
            mtime = 0
        cached = self._extra.get("issuer")
        if cached is not None and cached[0] == mtime and mtime:
            issuer: TokenIssuer = cached[1]
            return issuer
        key = ensure_keys(private, key_set) if a.create_keys else SigningKey.load(private)
        issuer = TokenIssuer(key, a.issuer, a.audience)
        self._extra["issuer"] = (private.stat().st_mtime_ns, issuer)
        return issuer

    @functools.cached_property
    def _verifier(self) -> TokenVerifier:
        a = self.settings.auth
        private, key_set = self.key_paths()
        if a.create_keys and not key_set.exists():
            ensure_keys(private, key_set)  # a laptop: the first process makes the keys
        return TokenVerifier(KeySetFile(key_set), a.issuer, a.audience)

    def verifier(self) -> TokenVerifier:
        """Checks tokens with the public key set (re-read when the file changes)."""
        return self._verifier

    def local_token(self, subject: str = "", role: int = 3, school: str = "") -> str | None:
        """The CLI's token: FERRY_TOKEN when set; else a short-lived token signed with the
        local private key when it is readable (a laptop just works), in `school` (its
        code; "" the default school); else None."""
        if os.environ.get("FERRY_TOKEN"):
            return os.environ["FERRY_TOKEN"].strip()
        a = self.settings.auth
        private, key_set = self.key_paths()
        try:
            key = ensure_keys(private, key_set) if a.create_keys else SigningKey.load(private)
        except (KeyFileError, OSError):
            return None
        who = subject or f"cli:{os.environ.get('USER', 'local')}"
        ttl = dt.timedelta(seconds=a.cli_token_ttl_seconds)
        issuer = TokenIssuer(key, a.issuer, a.audience)
        if school:
            return issuer.issue(who, role, ttl, school=school).token
        return issuer.issue(who, role, ttl).token

    def plugin_settings(self, group: str, name: str) -> Any:
        """The validated `plugins.<group>.<name>` settings of a plugin (its defaults when
        ferry.yaml has no section), or None when the plugin declares no settings model."""
        raw = self.settings.plugins.get(plugins.short(group), {}).get(name)
        model: BaseModel | None = plugins.parse_settings(group, name, raw)
        return model

    def plugin(self, group: str, name: str) -> Any:
        """The instance of plugin `name` in `group` for this app, built once as
        `factory(app)` after what it `depends_on`, each within
        `server.setup_timeout_seconds`; closed in reverse order by `close()`.
        Names here come from ferry.yaml, so a `module:attr` path is allowed."""
        key = (group, name)
        if key in self._plugins:
            return self._plugins[key]

        def deps(node: tuple[str, str]) -> list[tuple[str, str]]:
            obj = plugins.load(*node, allow_path=True)
            return [tuple(d) for d in getattr(obj, "depends_on", ())]  # type: ignore[misc]

        timeout = self.settings.server.setup_timeout_seconds
        for node in plugins.dependency_order([key], deps):
            if node not in self._plugins:
                self._plugins[node] = plugins.build_within(node, self, timeout)
        return self._plugins[key]

    def storage(self) -> Any:
        """The `ferry.storage` plugin named by `export.storage` (ferry.contracts.Storage)."""
        return self.plugin("ferry.storage", self.settings.export.storage)

    def redis(self) -> Any:
        """The shared Redis client (short timeouts, at most one retry), or None when
        `redis.url` is empty. Connecting is lazy: a dead Redis costs nothing here."""
        r = self.settings.redis
        if not r.url:
            return None
        if self._redis is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            self._redis = redis.Redis.from_url(
                r.url,
                socket_timeout=r.socket_timeout_seconds,
                socket_connect_timeout=r.connect_timeout_seconds,
                retry=Retry(NoBackoff(), r.retries),
                retry_on_timeout=bool(r.retries),
                max_connections=r.max_connections,
                health_check_interval=30,
            )
        return self._redis

    def close(self) -> None:
        for obj in reversed(list(self._plugins.values())):
            close = getattr(obj, "close", None)
            if callable(close):
                close()
        self._plugins.clear()
        if self._redis is not None:
            self._redis.close()
            self._redis = None
        if self._engine is not None:
            self._engine.dispose()

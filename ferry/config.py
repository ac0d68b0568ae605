"""ferry.yaml + FERRY_* environment overrides -> typed settings.

Any setting can be overridden by an environment variable named after its path:
`database.url` is FERRY_DATABASE_URL, `server.max_workers` is FERRY_SERVER_MAX_WORKERS,
`client.target` is FERRY_TARGET's long form FERRY_CLIENT_TARGET. Values are parsed as YAML
scalars/lists. Errors name the key (or variable) and what was wrong.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# Shortcuts operators expect; each maps to a settings path.
ALIASES = {
    "FERRY_TARGET": ("client", "target"),
}
# FERRY_* variables that are not settings.
NOT_SETTINGS = {"FERRY_CONFIG", "FERRY_TOKEN"}


class ConfigError(ValueError):
    """Configuration that cannot be used; the message names the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceSettings(Strict):
    """One service served by this process (`server.services[]`)."""

    name: str
    # Default deadline for calls to this service that arrive without one.
    timeout_seconds: float | None = None
    method_timeouts: dict[str, float] = {}
    # Filters for this service only; None means the server's chain.
    filters: list[str] | None = None


class ShutdownSettings(Strict):
    # After health turns NOT_SERVING, wait this long so load balancers stop sending calls.
    deregister_wait_seconds: float = 0.5
    # How long in-flight calls may take to finish before they are cancelled.
    grace_seconds: float = 10.0


class ServerSettings(Strict):
    address: str = "127.0.0.1:50051"
    max_workers: int = Field(16, ge=1, le=1024)
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024)
    filters: list[str] = ["logging", "metrics", "deadline", "auth"]
    default_timeout_seconds: float = Field(30.0, gt=0)
    reflection: bool = True
    shutdown: ShutdownSettings = ShutdownSettings()
    services: list[ServiceSettings] = [ServiceSettings(name="export")]

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {v!r}")
        return v


class ClientServiceSettings(Strict):
    name: str
    target: str = ""  # empty: client.target
    timeout_seconds: float | None = None


class ClientSettings(Strict):
    target: str = "127.0.0.1:50051"
    timeout_seconds: float = Field(30.0, gt=0)
    # Tries (first call included) for idempotent methods failing with UNAVAILABLE.
    max_attempts: int = Field(4, ge=1, le=5)
    services: list[ClientServiceSettings] = []

    def for_service(self, name: str) -> tuple[str, float]:
        """(target, default timeout) for calling service `name`."""
        for s in self.services:
            if s.name == name:
                return s.target or self.target, s.timeout_seconds or self.timeout_seconds
        return self.target, self.timeout_seconds


class MetricsSettings(Strict):
    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = Field(9100, ge=0, le=65535)


class DatabaseSettings(Strict):
    url: str = "sqlite:///var/ferry.db"
    # Migrate an embedded SQLite database on `ferry serve`; servers on PostgreSQL are
    # migrated by an explicit `ferry db upgrade` (a Job), never by every replica at once.
    auto_migrate: bool = True
    pool_size: int = Field(10, ge=1)


class AuthSettings(Strict):
    enabled: bool = True
    # HMAC key for signing tokens; created on first use when missing (a laptop).
    signing_key_file: str = "var/signing.key"
    issuer: str = "ferry"
    audience: str = "ferry"
    token_ttl_seconds: int = Field(3600, gt=0)
    # Lifetime of the tokens the CLI signs for itself when it can read the key.
    cli_token_ttl_seconds: int = Field(300, gt=0)


class LogSettings(Strict):
    level: str = "INFO"
    format: str = Field("json", pattern="^(json|text)$")


class ScheduleSettings(Strict):
    """One scheduled run (`export.schedules.<name>`), run by `ferry export run`.

    kind `export` (the default): an entity export job of `type` in `format`. Kind
    `backup`: a whole-database backup (every record, soft-deleted ones too) in
    `bundle_format`, written to `directory`, keeping the newest `keep` of this schedule.
    """

    kind: Literal["export", "backup"] = "export"
    type: str = ""
    format: str = "csv"
    # ExportFilters by name: status, search, semester, course_code, date_from, date_to.
    filters: dict[str, str] = {}
    fields: list[str] = []
    limit: int = Field(0, ge=0)
    include_deleted: bool = False
    notify: list[str] = []
    # kind backup only:
    bundle_format: str = "json"
    directory: str = "var/backups"
    keep: int = Field(7, ge=1)

    @model_validator(mode="after")
    def _kind_fields(self) -> ScheduleSettings:
        if self.kind == "export" and not self.type:
            raise ValueError("an export schedule needs `type` (the entity to export)")
        if self.kind == "backup" and self.type:
            raise ValueError("a backup schedule takes the whole database: leave out `type`")
        return self


class ExportSettings(Strict):
    stream_batch_size: int = Field(2000, ge=1, le=10000)
    # Entity export jobs: where finished files go (a `ferry.storage` plugin and its folders).
    storage: str = "local"
    storage_dir: str = "var/exports"
    archive_dir: str = "var/exports-archive"
    retention_days: int = Field(30, ge=1)
    max_rows: int = Field(1_000_000, ge=1)
    # Job worker threads per export service process; 0 runs no jobs (a read-only replica).
    workers: int = Field(2, ge=0, le=64)
    # How often an idle worker looks for pending jobs queued by other replicas.
    poll_seconds: float = Field(1.0, gt=0)
    # Running jobs touch heartbeat_at this often; the reaper fails jobs silent for longer
    # than heartbeat_timeout_seconds (their worker died), checking every reaper_seconds.
    heartbeat_seconds: float = Field(5.0, gt=0)
    heartbeat_timeout_seconds: float = Field(60.0, gt=0)
    reaper_seconds: float = Field(15.0, gt=0)
    # Progress is written to the job row at most this often.
    progress_seconds: float = Field(0.5, gt=0)
    schedules: dict[str, ScheduleSettings] = {}


class ImportSettings(Strict):
    """The `imports` section: the import service's limits and scratch space."""

    # Uploads larger than this are refused while they stream (RESOURCE_EXHAUSTED).
    max_upload_bytes: int = Field(512 * 1024 * 1024, ge=1)
    # Where uploads are spooled while they are read; empty: the system's temp folder.
    spool_dir: str = ""
    # Records per batch handed to the merge engine for csv/xlsx imports.
    batch_size: int = Field(5000, ge=1, le=100_000)


class GatewayDeadlines(Strict):
    """Deadlines (seconds) of the gateway's calls to services, per route class."""

    unary: float = Field(30.0, gt=0)
    download: float = Field(3600.0, gt=0)  # file downloads and NDJSON record streams
    events: float = Field(3600.0, gt=0)  # Server-Sent Events (WatchExportJob)
    upload: float = Field(900.0, gt=0)  # client-streaming imports


class GatewaySettings(Strict):
    """The HTTP gateway: REST + the Export Center page (`ferry serve` starts it)."""

    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Origins allowed to call the API from other sites' pages; empty allows none.
    cors_origins: list[str] = []
    deadlines: GatewayDeadlines = GatewayDeadlines()
    # Uploads larger than this are refused (413) while they are being read.
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1)
    # Login attempts per client address and username within the window.
    login_attempts: int = Field(5, ge=1)
    login_window_seconds: float = Field(60.0, gt=0)
    # Lifetime of signed download / progress links handed to the browser.
    link_ttl_seconds: int = Field(300, gt=0)
    # Services /readyz checks; empty means those in server.services.
    services: list[str] = []


class Settings(Strict):
    server: ServerSettings = ServerSettings()
    client: ClientSettings = ClientSettings()
    metrics: MetricsSettings = MetricsSettings()
    database: DatabaseSettings = DatabaseSettings()
    auth: AuthSettings = AuthSettings()
    log: LogSettings = LogSettings()
    export: ExportSettings = ExportSettings()
    gateway: GatewaySettings = GatewaySettings()
    imports: ImportSettings = ImportSettings()
    dataset: str = "school"
    # Per-plugin settings, `plugins.<group>.<name>: {...}`, handed to the plugin as is.
    plugins: dict[str, dict[str, dict[str, Any]]] = {}
    # Where relative paths (SQLite file, signing key) are resolved; the config's folder.
    base_dir: str = "."

    def path(self, p: str) -> Path:
        """`p` resolved against the config file's folder."""
        q = Path(p)
        return q if q.is_absolute() else Path(self.base_dir) / q

    def database_url(self) -> str:
        """The database URL with a relative SQLite path resolved against base_dir."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix) :]).resolve())
        return url


def default_config_path() -> Path | None:
    """FERRY_CONFIG, else ./ferry.yaml when present."""
    env = os.environ.get("FERRY_CONFIG")
    if env:
        return Path(env)
    here = Path("ferry.yaml")
    return here if here.exists() else None


def load(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `path` (or the default config) with `env` (default os.environ) on top."""
    env = os.environ if env is None else env
    path = path if path is not None else default_config_path()
    data: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = raw or {}
        data.setdefault("base_dir", str(path.resolve().parent))
    for var, value in sorted(env.items()):
        if not var.startswith("FERRY_") or var in NOT_SETTINGS:
            continue
        keys = ALIASES.get(var) or _resolve(var)
        _assign(data, keys, _parse(var, value))
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, path)) from None


def _resolve(var: str) -> tuple[str, ...]:
    """FERRY_SERVER_MAX_WORKERS -> ("server", "max_workers"), matched against the model."""
    words = var.removeprefix("FERRY_").lower().split("_")
    model: type[BaseModel] | None = Settings
    keys: list[str] = []
    i = 0
    while i < len(words):
        if model is None:
            raise ConfigError(f"environment variable {var} does not name a setting")
        for j in range(len(words), i, -1):  # longest field name first
            name = "_".join(words[i:j])
            if name in model.model_fields:
                keys.append(name)
                ann = model.model_fields[name].annotation
                model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
                i = j
                break
        else:
            raise ConfigError(f"environment variable {var} does not name a setting")
    return tuple(keys)


def _parse(var: str, value: str) -> Any:
    try:
        return yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"environment variable {var}: cannot parse {value!r}") from None


def _assign(data: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        if not isinstance(child, dict):
            child = {}
            node[k] = child
        node = child
    # A URL or address must stay a string even when YAML would read it otherwise.
    node[keys[-1]] = (
        value if not isinstance(value, (int, float)) or keys[-1] not in _STRINGY else str(value)
    )


_STRINGY = {"url", "address", "target", "signing_key_file"}


def _describe(e: ValidationError, path: Path | None) -> str:
    where = f" in {path}" if path else ""
    parts = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{key}: {msg}")
    return f"bad configuration{where}: " + "; ".join(parts)

"""ferry.yaml + FERRY_* environment overrides -> typed settings.

Any setting can be overridden by an environment variable named after its path:
`database.url` is FERRY_DATABASE_URL, `server.max_workers` is FERRY_SERVER_MAX_WORKERS,
`client.target` is FERRY_TARGET's long form FERRY_CLIENT_TARGET. Values are parsed as YAML
scalars/lists. Errors name the key (or variable) and what was wrong.
"""

from __future__ import annotations

import datetime as dt
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

from ferry import plugins

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
    # Filters added after the server's chain for this service only (never instead of it).
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
    # Each plugin's and service's set-up at start must finish within this many seconds.
    setup_timeout_seconds: float = Field(30.0, gt=0)
    # Close each client connection after this many seconds (0: never), so clients resolve
    # dns:/// targets again and reach pods added by scaling up (Kubernetes sets it).
    max_connection_age_seconds: float = Field(0.0, ge=0)
    # How often each service's health checks the database (0: never); unreachable means
    # NOT_SERVING for the services (readiness), while the overall "" stays SERVING.
    database_check_seconds: float = Field(5.0, ge=0)
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
    # Filters every outgoing call runs through (the client half of `ferry.filters`).
    filters: list[str] = ["logging", "metrics", "deadline", "auth"]
    # Tries (first call included) for idempotent methods failing with UNAVAILABLE.
    max_attempts: int = Field(4, ge=1, le=5)
    services: list[ClientServiceSettings] = []
    # gRPC load balancing over the addresses a target resolves to: "" or pick_first (one
    # connection), round_robin (each call to the next ready address: use it with dns:///
    # targets naming a Kubernetes headless Service).
    load_balancing_policy: str = Field("", pattern="^(|pick_first|round_robin)$")
    # Longest wait between tries to reconnect to an address that went away. gRPC's own is
    # 120 s and grows the longer a replica is down, so a replica restarted on its address
    # (a rolling update) could wait minutes for calls while the others did all the work.
    max_reconnect_backoff_seconds: float = Field(5.0, gt=0, le=120)

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
    # Series by school (label `school`: the school codes of the installation, never a
    # caller's text), only when true: ferry_school_calls_total{school, code}, the RPC
    # families ferry_rpc_server_school_* and the notify ferry_notify_school_* (docs/tenants.md).
    school_label: bool = False


class DatabaseSettings(Strict):
    # The app role's connection: every service, the gateway, the CLI's ordinary commands.
    # On PostgreSQL with several schools a role that is neither superuser nor BYPASSRLS,
    # so that row-level security binds it (docs/tenants.md).
    url: str = "sqlite:///var/ferry.db"
    # The platform role's connection (superuser or BYPASSRLS): `ferry db upgrade` runs
    # the migrations with it and then hands the tables to the app role. Empty: `url`.
    platform_url: str = ""
    # Migrate an embedded SQLite database on `ferry serve`; servers on PostgreSQL are
    # migrated by an explicit `ferry db upgrade` (a Job), never by every replica at once.
    auto_migrate: bool = True
    pool_size: int = Field(10, ge=1)


class AuthSettings(Strict):
    enabled: bool = True
    # The Ed25519 private key (PEM) that signs tokens: only the auth service holds it on
    # Kubernetes (and the CLI on a laptop). Created with the key set on first use when
    # neither exists and create_keys is on (a laptop).
    signing_key_file: str = "var/auth/signing-key.pem"
    # The public keys (a JSON Web Key Set) every service and the gateway verify with;
    # empty: public-keys.json beside signing_key_file.
    key_set_file: str = ""
    create_keys: bool = True
    # Public keys `ferry keys rotate` keeps in the set (the new one and its predecessors).
    keep_keys: int = Field(3, ge=2, le=20)
    issuer: str = "ferry"
    audience: str = "ferry"
    # Lifetime of a token from Login.
    token_ttl_seconds: int = Field(3600, gt=0)
    # CreateToken refuses a longer TTL (INVALID_ARGUMENT naming ttl_seconds).
    max_token_ttl_seconds: int = Field(90 * 86400, gt=0)
    # Lifetime of the tokens the CLI signs for itself when it can read the private key.
    cli_token_ttl_seconds: int = Field(300, gt=0)
    # Every service learns revoked token ids from the database (and Redis) this often.
    revocation_refresh_seconds: float = Field(10.0, gt=0, le=300)
    # Login itself (for callers that reach gRPC without the gateway) allows this many
    # failed attempts per username within login_window_seconds (shared through Redis).
    login_attempts: int = Field(10, ge=1)
    login_window_seconds: float = Field(60.0, gt=0)

    def key_set_path(self) -> str:
        """key_set_file, or public-keys.json beside the private key."""
        if self.key_set_file:
            return self.key_set_file
        return str(Path(self.signing_key_file).with_name("public-keys.json"))


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
    # When it runs: a 5-field cron expression read in `time_zone` (an IANA name). Empty: only
    # by hand. `ferry k8s cronjobs` makes a CronJob of it; `ferry serve` runs it itself when
    # export.scheduler.enabled. A run is keyed by schedule and local date, so at most daily.
    cron: str = ""
    time_zone: str = "UTC"
    # A run (the CronJob's Job) that takes longer than this is stopped and counts as failed.
    active_deadline_seconds: int = Field(3600, ge=60)

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, v: str) -> str:
        return _check_time_zone(v)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        return check_cron(v)

    @field_validator("notify")
    @classmethod
    def _notify(cls, v: list[str]) -> list[str]:
        from ferry.addresses import parse_recipients

        # A typo in ferry.yaml stops start-up instead of silencing the schedule's mail.
        return parse_recipients(v, "notify")

    # kind backup only:
    bundle_format: str = "json"
    directory: str = "var/backups"
    keep: int = Field(7, ge=1)
    # The school it runs for (docs/tenants.md): `school: CODE` one school; `schools: all`
    # every school, each in its own run (a backup of every school is one archive, made
    # as the platform role); neither: the default school.
    school: str = ""
    schools: Literal["", "all"] = ""

    @field_validator("school")
    @classmethod
    def _school(cls, v: str) -> str:
        import re

        if v and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", v):
            raise ValueError(
                f"{v[:64]!r} is not a school code (1-64 of a-z, 0-9 and '-', starting with "
                "a letter or digit)"
            )
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> ScheduleSettings:
        if self.school and self.schools:
            raise ValueError("name either `school: CODE` or `schools: all`, not both")
        if self.kind == "export" and not self.type:
            raise ValueError("an export schedule needs `type` (the entity to export)")
        if self.kind == "backup" and self.type:
            raise ValueError("a backup schedule takes the whole database: leave out `type`")
        return self


def check_cron(expr: str, daily: bool = True) -> str:
    """`expr` when it is a valid 5-field cron expression (or empty); ValueError otherwise.
    With `daily`, an expression that fires twice on one date is refused: runs are keyed by
    date, so the second run of a day would attach to the first."""
    from croniter import croniter

    expr = " ".join(expr.split())
    if not expr:
        return ""
    if len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise ValueError(f"{expr!r} is not a 5-field cron expression like '30 2 * * *'")
    if daily:
        it = croniter(expr, dt.datetime(2026, 1, 1))
        dates = [it.get_next(dt.datetime).date() for _ in range(60)]
        if len(set(dates)) != len(dates):
            raise ValueError(
                f"{expr!r} fires more than once a day; a scheduled export runs at most daily"
            )
    return expr


def _check_time_zone(v: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {v!r}; expected an IANA name like Europe/Athens"
        ) from None
    return v


class CleanupScheduleSettings(Strict):
    """`export.cleanup`: when the retention cleanup (`ferry export cleanup`) runs."""

    cron: str = "15 3 * * *"  # empty: never on a schedule
    time_zone: str = "UTC"
    archive: bool = False  # move files to the archive instead of deleting them

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, v: str) -> str:
        return _check_time_zone(v)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        return check_cron(v, daily=False)


class SchedulerSettings(Strict):
    """`export.scheduler`: the in-process scheduler of `ferry serve` (laptop mode). On
    Kubernetes it is off and CronJobs run the schedules: never both."""

    enabled: bool = True
    # A run missed by less than this (the process was down) still starts; an older one is
    # skipped. The CronJobs' startingDeadlineSeconds is the same number.
    starting_deadline_seconds: int = Field(3600, ge=10)
    check_seconds: float = Field(15.0, gt=0)  # how often due schedules are looked for


class ExportSettings(Strict):
    stream_batch_size: int = Field(2000, ge=1, le=10000)
    # Entity export jobs: where finished files go (a `ferry.storage` plugin; its own
    # settings are in plugins.storage.<name>).
    storage: str = "local"
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
    cleanup: CleanupScheduleSettings = CleanupScheduleSettings()
    scheduler: SchedulerSettings = SchedulerSettings()


# --- change limits (issue 29): see ferry.merge.limits -----------------------------
class ChangeLimitSettings(Strict):
    """One of `imports.change_limits`: at most `max_percent` of the live records of
    `entity` in `scope` may be created/updated/soft-deleted (`action`) by one import."""

    entity: str = Field(min_length=1)
    action: Literal["create", "update", "delete"]
    max_percent: float = Field(ge=0, le=100)
    # semester: among the import's semester's records; all: the whole table.
    scope: Literal["semester", "all"] = "semester"


# ------------------------------------------------------------------------------------


class ImportSettings(Strict):
    """The `imports` section: the import service's limits and scratch space."""

    # Uploads larger than this are refused while they stream (RESOURCE_EXHAUSTED).
    max_upload_bytes: int = Field(512 * 1024 * 1024, ge=1)
    # Where uploads are spooled while they are read; empty: the system's temp folder.
    spool_dir: str = ""
    # Records per batch handed to the merge engine for csv/xlsx imports.
    batch_size: int = Field(5000, ge=1, le=100_000)
    # Imports that would change more than this stop (FAILED_PRECONDITION) unless an
    # admin sets allow_mass_change (issue 29).
    change_limits: list[ChangeLimitSettings] = []
    # Three-way merge of bundle imports (issue 29, ferry.merge.threeway): a field changed
    # only here is kept; one changed on both sides follows `conflicts`
    # ("entity.field" | "entity" | "*" -> source | local | review; default source).
    keep_local_edits: bool = False
    conflicts: dict[str, Literal["source", "local", "review"]] = {}
    # required: an operator's import needs a plan (dry run) an admin approved
    # (ApprovePlan); plans expire this long after the preview (0: never).
    approval: Literal["off", "required"] = "off"
    plan_expiry_minutes: int = Field(1440, ge=0)
    # Mail addresses told (through notify's outbox) of every plan awaiting approval.
    approvers: list[str] = []


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
    link_ttl_seconds: int = Field(300, gt=0, le=3600)
    # Services /readyz checks; empty means those in server.services.
    services: list[str] = []
    # Login attempts per client address within login_window_seconds (login_attempts is
    # per username); both are shared by the replicas through Redis when redis.url is set.
    login_attempts_per_address: int = Field(20, ge=1)
    # Proxies (addresses or CIDR networks) whose X-Forwarded-For is believed, e.g. the
    # ingress; empty: the peer address is the client.
    trusted_proxies: list[str] = []

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for entry in v:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or CIDR network") from None
        return v


class RedisSettings(Strict):
    """The one Redis connection that caches, rate limits and revocations share."""

    # Empty: no Redis (a laptop); each user falls back to its in-process form.
    url: str = ""
    # redis-py's defaults can block for a minute on a dead host: keep these short.
    socket_timeout_seconds: float = Field(0.25, gt=0, le=30)
    connect_timeout_seconds: float = Field(0.25, gt=0, le=30)
    # Retries of a failed command (0 or 1); more would multiply the wait on a dead host.
    retries: int = Field(1, ge=0, le=1)
    max_connections: int = Field(50, ge=1)


class ServerTlsSettings(Strict):
    """TLS of this process's gRPC server; off while cert_file is empty."""

    cert_file: str = ""  # PEM certificate chain
    key_file: str = ""  # its private key (PEM)
    # Mutual TLS: clients must present a certificate signed by this CA; empty: no client
    # certificates are asked for.
    client_ca_file: str = ""


class ClientTlsSettings(Strict):
    """TLS of this process's gRPC calls (and the CLI's, and the gateway's); off while
    ca_file is empty. The server's certificate must name the target's host."""

    ca_file: str = ""  # the CA that signed the servers' certificates (PEM)
    # A client certificate for servers that ask for one (mutual TLS).
    cert_file: str = ""
    key_file: str = ""
    # The name the server's certificate must carry, when it is not the target's host.
    server_name: str = ""


class GatewayTlsSettings(Strict):
    """HTTPS for the gateway; off while cert_file is empty. With it on, responses carry
    Strict-Transport-Security."""

    cert_file: str = ""
    key_file: str = ""
    hsts_seconds: int = Field(31_536_000, ge=0)


class TlsSettings(Strict):
    server: ServerTlsSettings = ServerTlsSettings()
    client: ClientTlsSettings = ClientTlsSettings()
    gateway: GatewayTlsSettings = GatewayTlsSettings()


class NotifySettings(Strict):
    """The `notify` section: which channels exist, the outbox workers and the retry
    schedule. Each channel's own settings are in plugins.channels.<name>."""

    # Configured channels (`ferry.channels` plugin names); requests may name only these.
    channels: list[str] = ["log"]
    # Used when a request names no channel, and for export/import announcements.
    default_channels: list[str] = ["log"]
    default_language: str = Field("en", pattern="^(en|el)$")
    # Outbox worker threads per notify process (0: deliver nothing here).
    workers: int = Field(2, ge=0, le=64)
    # Rows one worker claims at once (mail to one relay reuses one connection).
    batch_size: int = Field(20, ge=1, le=1000)
    # Deliveries one worker has in flight at once, each on its own relay connection (smtp)
    # or request (webhook); 1: one after the other. A SIGKILL resends at most these. The
    # default is measured (bench/notify.py, relay taking 20 ms per mail; docs in
    # ferry/notify/README.md).
    sends_per_worker: int = Field(4, ge=1, le=64)
    # How often an idle worker looks for rows queued by other replicas.
    poll_seconds: float = Field(2.0, gt=0)
    # A worker woken by a Send in this process waits this long first, so the Sends
    # arriving meanwhile go out in its batch (one claim and one settle for many rows):
    # at 200 Sends/s, 20 ms made mail throughput a quarter higher than 5 ms.
    linger_seconds: float = Field(0.02, ge=0, le=1)
    # A claimed row belongs to its worker this long; after that another may take it (the
    # worker died). Must be longer than a channel's timeout.
    lease_seconds: float = Field(120.0, gt=0)
    # Delay before the 2nd, 3rd, ... attempt; the last repeats (RFC 5321 4.5.4.1).
    retry_schedule_seconds: list[float] = [60, 300, 1800, 7200]
    # Each delay is scattered by up to this fraction either way.
    retry_jitter: float = Field(0.1, ge=0, le=1)
    # Undelivered this long after it was queued: dead.
    give_up_after_seconds: float = Field(4 * 86400, gt=0)
    # Recipients of one Send, and of one SendBulk.
    max_recipients: int = Field(50, ge=1)
    max_bulk_recipients: int = Field(500, ge=1)
    # Download links in export mails are valid this long.
    link_ttl_days: int = Field(7, ge=1, le=365)
    # Where people reach the gateway; links in mails start with it. Empty: the gateway's own
    # address and port (`gateway.address`, `gateway.port`; a wildcard address becomes this
    # machine's host name), so a moved gateway never leaves mails pointing at the old port.
    public_url: str = ""

    @field_validator("retry_schedule_seconds")
    @classmethod
    def _schedule(cls, v: list[float]) -> list[float]:
        if not v or any(x <= 0 for x in v):
            raise ValueError("give at least one delay, each > 0 seconds")
        return v


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
    redis: RedisSettings = RedisSettings()
    tls: TlsSettings = TlsSettings()
    notify: NotifySettings = NotifySettings()
    dataset: str = "school"
    # Per-plugin settings, `plugins.<group>.<name>: {...}`, each validated by the model the
    # plugin declares (`settings_model`) when the configuration is loaded.
    plugins: dict[str, dict[str, dict[str, Any]]] = {}
    # Where relative paths (SQLite file, signing key) are resolved; the config's folder.
    base_dir: str = "."

    @model_validator(mode="after")
    def _public_url(self) -> Settings:
        if not self.notify.public_url:
            notify = self.notify.model_copy(update={"public_url": gateway_url(self.gateway)})
            object.__setattr__(self, "notify", notify)
        return self

    def path(self, p: str) -> Path:
        """`p` resolved against the config file's folder."""
        q = Path(p)
        return q if q.is_absolute() else Path(self.base_dir) / q

    def platform_database_url(self) -> str:
        """The platform role's URL (`database.platform_url`, else `database.url`)."""
        if not self.database.platform_url:
            return self.database_url()
        return self._resolved(self.database.platform_url)

    def database_url(self) -> str:
        """The database URL with a relative SQLite path resolved against base_dir."""
        return self._resolved(self.database.url)

    def _resolved(self, url: str) -> str:
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix) :]).resolve())
        return url


def gateway_url(gateway: GatewaySettings) -> str:
    """http://ADDRESS:PORT of the gateway as configured; a wildcard address (0.0.0.0, ::)
    is this machine's host name, an IPv6 one is bracketed."""
    import socket

    host = gateway.address
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{gateway.port}"


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
        settings = Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, path)) from None
    try:
        plugins.validate_settings(settings.plugins)
    except plugins.PluginError as e:
        where = f" in {path}" if path else ""
        raise ConfigError(f"bad configuration{where}: {e}") from None
    return settings


def _resolve(var: str) -> tuple[str, ...]:
    """FERRY_SERVER_MAX_WORKERS -> ("server", "max_workers"), matched against the model."""
    words = var.removeprefix("FERRY_").lower().split("_")
    if words[0] == "plugins" and len(words) > 1:
        found = plugins.env_path(words[1:])
        if found is None:
            raise ConfigError(
                f"environment variable {var} does not name a plugin setting "
                "(FERRY_PLUGINS_<GROUP>_<NAME>_<KEY>)"
            )
        return ("plugins", *found)
    keys = plugins.model_path(Settings, words)
    if keys is None:
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


_STRINGY = {"url", "address", "target", "signing_key_file", "key_set_file", "server_name"}


def _describe(e: ValidationError, path: Path | None) -> str:
    where = f" in {path}" if path else ""
    parts = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{key}: {msg}")
    return f"bad configuration{where}: " + "; ".join(parts)

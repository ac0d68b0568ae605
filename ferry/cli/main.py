"""`ferry` — serve, migrate, seed demo data, create tokens, and call the services."""

from __future__ import annotations

import gc
import importlib
import logging
from typing import Any

import click

from ferry import logs, plugins
from ferry.cli.banner import Running, banner
from ferry.cli.common import find_config, load_app, table

# Verb groups that talk gRPC to the services live in modules of their own, imported only
# when their verb is used (or listed by --help): a CronJob's `ferry export start` does not
# pay for OneRoster's formats, backups and Alembic (~0.4 s of CPU of 1.1 at start).
# name -> "module:attribute"; `export` comes from export_jobs, which adds its verbs to it.
LAZY = {
    "export": "ferry.cli.export_jobs:export",
    "import": "ferry.cli.imports:imports",
    "user": "ferry.cli.accounts:user",
    "token": "ferry.cli.accounts:token",
    "keys": "ferry.cli.accounts:keys",
    "notify": "ferry.cli.notify:notify",
    "report": "ferry.cli.report:report",
    "k8s": "ferry.cli.k8s:k8s",
    "backup": "ferry.cli.backup:backup",
    "oneroster": "ferry.cli.oneroster:oneroster",
    "school": "ferry.cli.schools:school",
}


class LazyGroup(click.Group):
    """click's documented pattern for subcommands loaded on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY and cmd_name not in self.commands:
            module, attr = LAZY[cmd_name].split(":")
            command: Any = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup)
@click.option("--config", "config_path", envvar="FERRY_CONFIG", help="ferry.yaml to use.")
@click.option("-v", "--verbose", is_flag=True, help="Say which ferry.yaml is used, and why.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Ferry moves a school's data between systems.

    The ferry.yaml used is --config/FERRY_CONFIG, else ./ferry.yaml, else the one in the
    folder Ferry was installed from (-v prints which)."""
    ctx.ensure_object(dict)["config"] = config_path
    if verbose:
        path, why = find_config(config_path)
        click.echo(f"config: {path or '-'} ({why})", err=True)


@cli.command()
@click.argument("services", nargs=-1)
@click.pass_context
def serve(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Serve SERVICES (default: every service in ferry.yaml) and /metrics."""
    from ferry.db import migrate
    from ferry.export_jobs import schedule
    from ferry.rpc.metrics_http import serve_metrics
    from ferry.rpc.server import Server

    app = load_app(ctx)
    s = app.settings
    logs.setup(s.log.level, s.log.format)
    engine = app.engine
    if not migrate.is_current(engine):
        if engine.dialect.name == "sqlite" and s.database.auto_migrate:
            migrate.upgrade(engine)
        else:
            raise click.ClickException(
                f"database schema is at {migrate.current(engine)}, code needs {migrate.head()}: "
                "run `ferry db upgrade` first"
            )
    try:
        server = Server(app, list(services) or None)
        port = server.start()
    except plugins.PluginError as e:  # a typo in ferry.yaml: say which and what is known
        raise click.ClickException(f"cannot start: {e}") from None
    running = Running(
        grpc=f"{s.server.address.rpartition(':')[0]}:{port}",
        services=list(server.names),
        database=engine.url.render_as_string(hide_password=True),
        channels=list(s.notify.channels) if "notify" in server.names else [],
    )
    if s.metrics.enabled:
        _, mport = serve_metrics(s.metrics.address, s.metrics.port)
        running.metrics = f"http://{s.metrics.address}:{mport}/metrics"
    gateway = None
    if s.gateway.enabled and not services:  # `ferry serve`: everything in one process
        from gateway.server import GatewayServer

        host = s.server.address.rpartition(":")[0]
        host = "127.0.0.1" if host in ("0.0.0.0", "[::]", "::") else host  # reach it locally
        gateway = GatewayServer(app, target=f"{host}:{port}")
        try:
            gport = gateway.start()
        except OSError as e:
            server.stop(grace=0, deregister_wait=0)
            raise click.ClickException(str(e)) from None
        scheme = "https" if s.tls.gateway.cert_file else "http"
        running.web = f"{scheme}://{s.gateway.address}:{gport}/"
    local = s.server.address.rpartition(":")[0]
    local = "127.0.0.1" if local in ("0.0.0.0", "[::]", "::") else local
    scheduler = schedule.serve_schedules(app, [] if services else server.names, f"{local}:{port}")
    if scheduler is not None:
        running.schedules = list(scheduler.schedules)
    _freeze_startup_heap()
    server.stop_on_signals()  # before the banner: whoever reads it may stop us at once
    click.echo(banner(running), err=True)
    server.wait()
    if scheduler is not None:
        scheduler.stop()
    if gateway is not None:
        gateway.stop()


def _freeze_startup_heap() -> None:
    """Hide what start-up built from the garbage collector, once a server is up.

    Modules, settings, protobuf descriptors and table metadata (~150k objects) live as
    long as the process, yet every full collection walked them all: a 10,000-row csv
    import set off two that took ~120 ms each, a third of its time. Frozen, the full
    collections a call sets off scan only what calls allocate (~2 ms there). Only the
    long-running commands do this: a test process starts many servers in one interpreter.
    """
    gc.collect()
    gc.freeze()


@cli.command("gateway")
@click.pass_context
def gateway_only(ctx: click.Context) -> None:
    """Serve only the HTTP gateway, calling the services at their configured client
    targets (a gateway pod; `ferry serve` already includes it on a laptop)."""
    import signal
    import threading

    from gateway.server import GatewayServer

    app = load_app(ctx)
    s = app.settings
    logs.setup(s.log.level, s.log.format)
    server = GatewayServer(app)
    try:
        port = server.start()
    except OSError as e:
        raise click.ClickException(str(e)) from None
    scheme = "https" if s.tls.gateway.cert_file else "http"
    _freeze_startup_heap()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo(f"Ferry gateway on {scheme}://{s.gateway.address}:{port}/", err=True)
    while not stop.wait(0.2):  # short waits: see ferry.rpc.server.Server.wait
        pass
    server.stop()


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True)
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Migrate the database schema (to the newest revision by default).

    Runs as the platform role (database.platform_url, else database.url); then, on
    PostgreSQL, hands the tables to the app role of database.url when that is another
    role (docs/tenants.md)."""
    from ferry.db import migrate, roles
    from ferry.db.engine import make_engine

    app = load_app(ctx)
    s = app.settings
    platform = make_engine(s.platform_database_url())
    try:
        migrate.upgrade(platform, revision)
        click.echo(f"database at revision {migrate.current(platform)}")
        app_role = roles.role_of(s.database_url())
        if app_role and app_role != roles.role_of(s.platform_database_url()):
            try:
                tables = roles.hand_over(platform, app_role)
            except roles.RoleError as e:
                raise click.ClickException(str(e)) from None
            click.echo(f"{len(tables)} tables handed to the app role {app_role}")
        elif platform.dialect.name == "postgresql" and not roles.binds(platform):
            click.echo(
                "warning: the app connects as a superuser or BYPASSRLS role, which "
                "row-level security does not bind; see docs/tenants.md",
                err=True,
            )
    finally:
        platform.dispose()


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Print the schema revision of the database and of the code."""
    from ferry.db import migrate

    app = load_app(ctx)
    click.echo(f"database: {migrate.current(app.engine)}  code: {migrate.head()}")


@cli.group()
def demo() -> None:
    """Demo and benchmark data."""


@demo.command("seed")
@click.option(
    "--scale", type=click.Choice(["small", "medium", "bench"]), default="small", show_default=True
)
@click.option("--seed", "seed_", type=int, default=1, show_default=True, help="Random seed.")
@click.option("--if-empty", is_flag=True, help="Do nothing (and succeed) when data exists.")
@click.pass_context
def demo_seed(ctx: click.Context, scale: str, seed_: int, if_empty: bool) -> None:
    """Fill an empty database with deterministic, realistic school data."""
    from ferry.db import migrate
    from ferry.demo.seed import Scale, SeedError, is_empty, seed

    app = load_app(ctx)
    if not migrate.is_current(app.engine):
        migrate.upgrade(app.engine)
    if if_empty and not is_empty(app.engine):
        click.echo("database already has data; not seeding")
        return
    try:
        result = seed(app.engine, Scale(scale), seed_)
    except SeedError as e:
        raise click.ClickException(str(e)) from None
    total = sum(result.counts.values())
    table([[k, f"{v:,}"] for k, v in result.counts.items()], ["entity", "records"])
    click.echo(f"seeded {total:,} records in {result.seconds:.1f}s")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    cli(prog_name="ferry")


if __name__ == "__main__":
    main()

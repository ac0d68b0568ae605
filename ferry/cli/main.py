"""`ferry` — serve, migrate, seed demo data, create tokens, and call the services."""

from __future__ import annotations

import datetime as dt
import logging

import click

from ferry import logs
from ferry.auth import parse_role
from ferry.cli import backup as backup_commands
from ferry.cli import export as export_commands
from ferry.cli import export_jobs  # noqa: F401
from ferry.cli import imports as import_commands
from ferry.cli import users as user_commands
from ferry.cli.common import load_app, parse_duration, table
from ferry.db import migrate


@click.group()
@click.option("--config", "config_path", envvar="FERRY_CONFIG", help="ferry.yaml to use.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Ferry moves a school's data between systems."""
    ctx.ensure_object(dict)["config"] = config_path


@cli.command()
@click.argument("services", nargs=-1)
@click.pass_context
def serve(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Serve SERVICES (default: every service in ferry.yaml) and /metrics."""
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
    server = Server(app, list(services) or None)
    port = server.start()
    where = [f"gRPC    {s.server.address.rpartition(':')[0]}:{port}  ({', '.join(server.names)})"]
    if s.metrics.enabled:
        _, mport = serve_metrics(s.metrics.address, s.metrics.port)
        where.append(f"metrics http://{s.metrics.address}:{mport}/metrics")
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
        where.append(f"web     http://{s.gateway.address}:{gport}/  (API docs: /docs)")
    where.append(f"database {engine.url.render_as_string(hide_password=True)}")
    click.echo("Ferry is running:\n  " + "\n  ".join(where), err=True)
    server.stop_on_signals()
    server.wait()
    if gateway is not None:
        gateway.stop()


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
    click.echo(f"Ferry gateway on http://{s.gateway.address}:{port}/", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True)
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Migrate the database schema (to the newest revision by default)."""
    app = load_app(ctx)
    migrate.upgrade(app.engine, revision)
    click.echo(f"database at revision {migrate.current(app.engine)}")


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Print the schema revision of the database and of the code."""
    app = load_app(ctx)
    click.echo(f"database: {migrate.current(app.engine)}  code: {migrate.head()}")


@cli.group()
def demo() -> None:
    """Demo and benchmark data."""


@demo.command("seed")
@click.option("--scale", type=click.Choice(["small", "bench"]), default="small", show_default=True)
@click.option("--seed", "seed_", type=int, default=1, show_default=True, help="Random seed.")
@click.option("--if-empty", is_flag=True, help="Do nothing (and succeed) when data exists.")
@click.pass_context
def demo_seed(ctx: click.Context, scale: str, seed_: int, if_empty: bool) -> None:
    """Fill an empty database with deterministic, realistic school data."""
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


@cli.group()
def token() -> None:
    """Bearer tokens for CLI users, CronJobs and other services."""


@token.command("create")
@click.option("--role", required=True, type=click.Choice(["viewer", "operator", "admin"]))
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 90s, 15m, 12h, 30d.")
@click.option("--subject", default="", help="Who the token is for (default: the role).")
@click.pass_context
def token_create(ctx: click.Context, role: str, ttl: str, subject: str) -> None:
    """Print a signed token (needs the signing key; it is created on a laptop)."""
    app = load_app(ctx)
    seconds = parse_duration(ttl)
    click.echo(app.signer().issue(subject or role, parse_role(role), dt.timedelta(seconds=seconds)))


# Verb groups that talk gRPC to the services live in their own modules.
cli.add_command(export_commands.export)
cli.add_command(import_commands.imports, name="import")
cli.add_command(user_commands.user)
cli.add_command(backup_commands.backup)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    cli(prog_name="ferry")


if __name__ == "__main__":
    main()

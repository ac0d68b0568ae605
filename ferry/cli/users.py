"""`ferry user add`: accounts for the Export Center page (stored in the database)."""

from __future__ import annotations

import sys

import click

from ferry.cli.common import load_app
from ferry.db import migrate
from ferry.errors import FerryError

# The one fixed password Ferry knows: only for the embedded SQLite demo (`make run`),
# never for a database server.
DEMO_PASSWORD = "ferry-demo-admin"


@click.group()
def user() -> None:
    """People who sign in to the Export Center page."""


@user.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "operator", "admin"]),
    default="viewer",
    show_default=True,
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--if-missing", is_flag=True, help="Succeed without change when NAME exists.")
@click.option(
    "--demo",
    is_flag=True,
    help=f"Embedded SQLite: the demo password {DEMO_PASSWORD!r} (elsewhere: a generated one).",
)
@click.pass_context
def user_add(
    ctx: click.Context, name: str, role: str, password_stdin: bool, if_missing: bool, demo: bool
) -> None:
    """Create user NAME; prints a generated password unless one is given."""
    from ferry.users import create_user, generate_password, user_exists

    app = load_app(ctx)
    engine = app.engine
    if not migrate.is_current(engine):
        migrate.upgrade(engine)
    if demo and engine.dialect.name != "sqlite":
        demo = False  # a database server never gets a well-known password: generate one
    if if_missing and user_exists(engine, name):
        if demo:
            click.echo(f"Sign in as {name} / {DEMO_PASSWORD} (demo account)")
        else:
            click.echo(f"user {name} exists; not changed")
        return
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif demo:
        password = DEMO_PASSWORD
    else:
        password = generate_password()
    try:
        create_user(engine, name, password, role)
    except FerryError as e:
        raise click.ClickException(e.message) from None
    if password_stdin:
        click.echo(f"created user {name} ({role})")
    else:
        click.echo(f"created user {name} ({role}); password: {password}")

"""`ferry school add|list|show`: the schools of this installation (docs/tenants.md).

Platform work, so it runs on the database directly as the platform role
(`database.platform_url`, else `database.url`), never through a service: a school's
token cannot add or see another school.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.engine import Engine

from ferry.cli.common import load_app, table
from ferry.db import migrate
from ferry.db import schools as school_store
from ferry.db.engine import make_engine
from ferry.errors import FerryError


@contextmanager
def _platform(ctx: click.Context) -> Iterator[Engine]:
    app = load_app(ctx)
    engine = make_engine(app.settings.platform_database_url())
    try:
        if not migrate.is_current(engine):
            raise click.ClickException(
                f"database schema is at {migrate.current(engine)}, code needs "
                f"{migrate.head()}: run `ferry db upgrade` first"
            )
        yield engine
    except FerryError as e:
        raise click.ClickException(e.message) from None
    finally:
        engine.dispose()


@click.group()
def school() -> None:
    """Schools of this installation (platform work, on the database directly)."""


@school.command("add")
@click.argument("code")
@click.option("--name", default="", help="What people call it.")
@click.option("--language", default="", help="en or el: its mails' language.")
@click.option("--time-zone", default="", help="IANA name, e.g. Europe/Athens.")
@click.option("--sender", default="", help="The mail address its mails come from.")
@click.pass_context
def school_add(
    ctx: click.Context, code: str, name: str, language: str, time_zone: str, sender: str
) -> None:
    """Add school CODE (a-z, 0-9 and '-')."""
    with _platform(ctx) as engine:
        made = school_store.add(engine, code, name, language, time_zone, sender)
    click.echo(f"school {made.code} added (id {made.id})")


@school.command("list")
@click.pass_context
def school_list(ctx: click.Context) -> None:
    """Every school, by code."""
    with _platform(ctx) as engine:
        found = school_store.all_schools(engine)
    table(
        [[s.code, s.name, s.language or "-", s.time_zone or "-", s.sender or "-"] for s in found],
        ["code", "name", "language", "time zone", "sender"],
    )


@school.command("show")
@click.argument("code")
@click.pass_context
def school_show(ctx: click.Context, code: str) -> None:
    """One school's settings."""
    with _platform(ctx) as engine:
        s = school_store.find(engine, code, field="code")
    for label, value in (
        ("code", s.code),
        ("id", s.id),
        ("name", s.name),
        ("language", s.language or "-"),
        ("time zone", s.time_zone or "-"),
        ("sender", s.sender or "-"),
    ):
        click.echo(f"{label + ':':11}{value}")

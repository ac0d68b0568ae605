"""The two database roles of a multi-school install (docs/tenants.md).

The **platform role** (`database.platform_url`: a superuser, or a role with BYPASSRLS)
runs the migrations and, later, full-system backups, from the CLI only. The **app role**
(`database.url`) runs everything else; row-level security binds it because it is neither
a superuser nor BYPASSRLS and the tables FORCE it on their owner too. It owns the tables
(the merge engine's bulk load drops and rebuilds a table's indexes, which only an owner
may), so `hand_over` gives them to it after every migration.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine


class RoleError(RuntimeError):
    """The app role would not be bound by row-level security, or does not exist."""


def role_of(url: str) -> str:
    """The user name a database URL signs in as ("" for SQLite or none given)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return ""
    return parsed.username or ""


def hand_over(platform: Engine, app_role: str) -> list[str]:
    """Make `app_role` the owner of every table of the schema (their sequences follow),
    with USAGE and CREATE on the schema (the merge engine's staging tables) and TEMP on
    the database; returns the tables handed over. Refuses a role that row-level security
    would not bind (superuser or BYPASSRLS): then the second wall would not stand."""
    if platform.dialect.name != "postgresql":
        return []
    with platform.begin() as conn:
        row = conn.execute(
            sa.text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"),
            {"r": app_role},
        ).first()
        if row is None:
            raise RoleError(f"database role {app_role!r} does not exist")
        if row[0] or row[1]:
            raise RoleError(
                f"database role {app_role!r} is a superuser or has BYPASSRLS: row-level "
                "security would not bind it; give the app a role of its own "
                "(database.url) and keep this one for database.platform_url"
            )
        role = conn.dialect.identifier_preparer.quote(app_role)
        tables = list(
            conn.execute(
                sa.text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                    "ORDER BY tablename"
                )
            ).scalars()
        )
        quote = conn.dialect.identifier_preparer.quote
        for table in tables:
            conn.exec_driver_sql(f"ALTER TABLE {quote(table)} OWNER TO {role}")
        schema, database = conn.exec_driver_sql(
            "SELECT current_schema(), current_database()"
        ).one()
        conn.exec_driver_sql(f"GRANT USAGE, CREATE ON SCHEMA {quote(schema)} TO {role}")
        conn.exec_driver_sql(f"GRANT TEMP, CONNECT ON DATABASE {quote(database)} TO {role}")
    return tables


def binds(engine: Engine) -> bool:
    """Whether row-level security binds `engine`'s role (False on SQLite, where there is
    none, and for a superuser or BYPASSRLS role)."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).scalar_one()
    return not row

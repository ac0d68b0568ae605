"""Engines for the configured database: SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ferry.db import tenant


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`, tuned per backend.

    SQLite gets WAL (readers never block the writer), foreign keys on, and its folder
    created; PostgreSQL gets pre-ping so a restarted server is noticed, not reported as a
    broken query.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = sa.create_engine(url, **kwargs)
    sa.event.listen(engine, "begin", _set_school)
    sa.event.listen(engine, "checkin", _forget)
    return engine


def _set_school(conn: Connection) -> None:
    """`SET LOCAL ferry.school` to the acting school as the transaction begins: the
    row-level security policies (migration 0013) let it see and write that school's rows
    only, and the setting ends with the transaction, so a pooled connection never
    carries it into the next one. On the DBAPI connection: it is the transaction's first
    statement, and SQLAlchemy's own is still being begun.

    An AUTOCOMMIT connection makes every statement a transaction of its own, so there the
    setting is the session's until the connection goes back to the pool (`_forget`)."""
    school = str(tenant.school_id())
    autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute("SELECT set_config('ferry.school', %s, %s)", (school, not autocommit))
    finally:
        cursor.close()
    if autocommit:
        conn.connection.info[_SESSION_SCHOOL] = True


_SESSION_SCHOOL = "ferry_session_school"


def _forget(dbapi_conn: Any, record: Any) -> None:
    """Back in the pool: a session-wide school set on an AUTOCOMMIT connection goes."""
    if record.info.pop(_SESSION_SCHOOL, False):
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("RESET ferry.school")
        finally:
            cursor.close()
        dbapi_conn.commit()  # the driver began a transaction for it; the pool wants none


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"

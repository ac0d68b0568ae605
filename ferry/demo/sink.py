"""Bulk writers for the demo seed: COPY on PostgreSQL, executemany on SQLite.

Both write into the caller's open transaction on a raw DBAPI connection; the caller commits
or rolls back. Rows arrive as tuples in `generate.COLUMNS` order with ids already set.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from typing import Any, Protocol

from ferry.demo.plan import COLUMNS, Formats, Row


class Sink(Protocol):
    """Where generated rows go."""

    formats: Formats

    def write(self, table: str, rows: Iterable[Row]) -> None:
        """Insert `rows` (full rows, ids included) into `table`."""

    def finish(self) -> None:
        """Make the database ready for normal inserts after the bulk load."""


def _identity(value: Any) -> Any:
    return value


class PostgresSink:
    """COPY FROM STDIN through psycopg 3: an order of magnitude faster than INSERTs."""

    # psycopg adapts aware datetimes and dates itself: keep the objects.
    formats = Formats(ts=_identity, day=_identity)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def write(self, table: str, rows: Iterable[Row]) -> None:
        """COPY `rows` into `table`."""
        columns = ", ".join(COLUMNS[table])
        with (
            self._conn.cursor() as cur,
            cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def finish(self) -> None:
        """Move each id sequence past the ids written, or the next INSERT would collide."""
        with self._conn.cursor() as cur:
            for table in COLUMNS:
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) "
                    f"FROM {table} HAVING max(id) IS NOT NULL"
                )
                # Fresh statistics, or the planner takes a million-row table for empty.
                cur.execute(f"ANALYZE {table}")


# SQLAlchemy's SQLite DateTime/Date storage formats: anything else would not compare or
# parse like the values the application writes.
_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"


def _sqlite_ts(value: dt.datetime) -> str:
    # The generator's datetimes are UTC; SQLite stores them naive, as SQLAlchemy does.
    return value.strftime(_SQLITE_TS)


def _sqlite_day(value: dt.date) -> str:
    return value.isoformat()


class SqliteSink:
    """executemany on the sqlite3 connection, streaming rows, in one transaction."""

    formats = Formats(ts=_sqlite_ts, day=_sqlite_day)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        # In sqlite3's autocommit mode nothing would begin a transaction for us.
        if not conn.in_transaction:
            conn.execute("BEGIN")

    def write(self, table: str, rows: Iterable[Row]) -> None:
        """INSERT `rows` into `table`; sqlite3 consumes the iterable lazily."""
        columns = COLUMNS[table]
        marks = ", ".join("?" * len(columns))
        self._conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def finish(self) -> None:
        """Fresh planner statistics (SQLite continues rowids after the largest one)."""
        self._conn.execute("ANALYZE")

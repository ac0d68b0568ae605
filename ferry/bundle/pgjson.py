"""A bundle's records written as JSON text by PostgreSQL itself (issue 27).

DownloadSession's json, jsonl and tar.gz writers need each record as the compact JSON the
records checksum covers (ferry.bundle.formats.common: sorted keys, no spaces, instants as
RFC 3339 UTC with `Z`), which the Python path makes with a dict and an orjson call per
record. On PostgreSQL the export query here selects that text instead, built by the
database from the same columns, byte for byte what orjson writes:

- text: `to_json(value::text)`, the escapes orjson writes (`\\"`, `\\\\`, `\\b \\f \\n \\r
  \\t`, other control characters as `\\u00XX` in lower case; everything else, non-ASCII
  and U+2028 too, as it is);
- integers: their text; dates: their text in quotes (DateStyle ISO, as the Python path
  reads them too: ferry.bundle.scan);
- instants: `to_char` in the snapshot's time zone (UTC), microseconds only when not
  zero, and a `Z`; an instant outside the years 1-9999, which orjson cannot write either
  (psycopg refuses to load it), fails the query;
- floats (double precision): PostgreSQL's text is the shortest that reads back, as
  orjson's is, in another notation: orjson writes plain digits from 1e-5 up to 1e16
  (integral values with `.0`) and otherwise `1e+16`, `1.5e-7`; PostgreSQL plain from
  1e-4 up to 1e15, integral values without `.0`, exponents of at least two digits. The
  expression picks the notation by the value and converts where they differ (through
  numeric, exact for a decimal text); NaN and infinities are `null`, as orjson writes them.
  From 1e16 up PostgreSQL's digits can be longer than orjson's (it never takes the
  digits on the rounding boundary: 1e23 is 9.999999999999999e+22 to it), so a record
  holding such a value is marked and written again by orjson in Python (scores are
  bounded by a million: the bench data has none);
- NULL is `null` for every field.

The query runs in the scan's snapshot without a cursor: libpq hands over `batch_size`
rows at a time (chunked rows mode, `Cursor.stream(size=...)`, libpq 17 and later), each
value the record's UTF-8 bytes (`convert_to`, bytea in binary: no decoding, no escapes),
joined by newlines into one bytes object per batch (JsonLines). Python then handles one
object per batch of records instead of a tuple, a dict and an encoding call per record,
and PostgreSQL sends the rows without waiting for a FETCH per batch (a server-side
cursor's round trips cost it more CPU than the JSON does). A slow writer slows the query
(nothing reads the socket until the next chunk is asked for): memory stays flat. The figures and
what was tried: the bundle README, "The fifth pass".

tests/bundle/test_pgjson.py holds every form above against orjson, and a bundle written
this way against the Python path's, byte for byte.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import closing
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa

from ferry.bundle.formats.common import DIGEST_OPTS
from ferry.bundle.scan import Scan
from ferry.datasets.query import Column
from ferry.datasets.spec import Entity, Kind

TEXT = sa.Text()
FLOAT8: sa.Double[float] = sa.Double()


def _literal(text: str) -> sa.ColumnElement[Any]:
    """`text` as an SQL string literal (no bind parameter: it is the same for every row)."""
    return sa.literal_column("'" + text.replace("'", "''") + "'", TEXT)


NULL = _literal("null")
QUOTE = _literal('"')
# Instants: the years orjson (and Python's datetime) can write.
FIRST_INSTANT = _literal("0001-01-01 00:00:00")
PAST_LAST_INSTANT = _literal("10000-01-01 00:00:00")
INSTANT_FORMAT = _literal('YYYY-MM-DD"T"HH24:MI:SS.US')
NO_FRACTION = _literal(".000000")  # orjson writes no fraction for a whole second
# Before a record Python re-encodes: U+0001, which JSON text never holds unescaped, so
# one memchr per batch finds whether any record is marked.
MARK = sa.literal_column("chr(1)", TEXT)
MARKED = b"\x01"


def _float8(text: str) -> sa.ColumnElement[Any]:
    return sa.cast(_literal(text), FLOAT8)


def supported(columns: Sequence[Column], selected: Sequence[Any]) -> bool:
    """Whether every column is of a type `record_json` writes as orjson would: text,
    integers, double precision, dates and timestamps, by their SQLAlchemy types."""
    for col, sel in zip(columns, selected, strict=True):
        t = sel.type
        if col.kind is Kind.STR:
            ok = isinstance(t, sa.String | sa.Text)
        elif col.kind is Kind.INT:
            ok = isinstance(t, sa.Integer)
        elif col.kind is Kind.FLOAT:
            # double precision only: a real (float4) reads into Python as another value.
            ok = (
                isinstance(t, sa.Float)
                and not isinstance(t, sa.REAL)
                and (t.precision is None or t.precision > 24)
            )
        elif col.kind is Kind.DATE:
            ok = isinstance(t, sa.Date) and not isinstance(t, sa.DateTime)
        elif col.kind is Kind.TIMESTAMP:
            ok = isinstance(t, sa.DateTime)
        else:
            ok = False
        if not ok:
            return False
    return True


def _value(col: Column, e: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The JSON text of one field (`null` for NULL)."""
    if col.kind is Kind.STR:
        return sa.func.coalesce(sa.cast(sa.func.to_json(sa.cast(e, TEXT)), TEXT), NULL)
    if col.kind is Kind.INT:
        return sa.func.coalesce(sa.cast(e, TEXT), NULL)
    if col.kind is Kind.DATE:
        return sa.func.coalesce(QUOTE + sa.cast(e, TEXT) + QUOTE, NULL)
    if col.kind is Kind.TIMESTAMP:
        text = sa.func.replace(sa.func.to_char(e, INSTANT_FORMAT), NO_FRACTION, _literal(""))
        # Outside years 1-9999 the query fails (an integer cast of a message names the
        # value), as the Python path does when psycopg refuses to load it.
        refused = sa.cast(
            sa.cast(_literal("a bundle instant must lie in years 1-9999, not ") + sa.cast(e, TEXT),
                    sa.Integer),
            TEXT,
        )  # fmt: skip
        return sa.case(
            (e.is_(None), NULL),
            (sa.and_(e >= FIRST_INSTANT, e < PAST_LAST_INSTANT), QUOTE + text + _literal('Z"')),
            else_=refused,
        )
    if col.kind is Kind.FLOAT:
        digits: sa.ColumnElement[Any] = sa.cast(e, TEXT)
        exact = sa.cast(sa.cast(digits, sa.Numeric), TEXT)  # plain digits of the same decimal
        size = sa.func.abs(e)
        return sa.case(
            (e.is_(None), NULL),
            # The common case first: PostgreSQL and orjson both write plain digits.
            (sa.and_(e == sa.func.trunc(e), size < _float8("1e15")), digits + _literal(".0")),
            (sa.and_(size >= _float8("1e-4"), size < _float8("1e15")), digits),
            (sa.or_(e == _float8("NaN"), size == _float8("Infinity")), NULL),
            # Both in exponent form: orjson writes no leading zero in the exponent.
            (
                sa.or_(size >= _float8("1e16"), size < _float8("1e-5")),
                sa.func.replace(digits, _literal("e-0"), _literal("e-")),
            ),
            # 1e15 <= |x| < 1e16 or 1e-5 <= |x| < 1e-4: orjson writes plain digits.
            (e == sa.func.trunc(e), exact + _literal(".0")),
            else_=exact,
        )
    raise ValueError(f"no JSON form for {col.kind}")


def record_json(columns: Sequence[Column], selected: Sequence[Any]) -> sa.ColumnElement[Any]:
    """One record's JSON text as orjson writes it with sorted keys (see the module
    docstring), from the export query's selected columns."""
    pairs = sorted(zip(columns, selected, strict=True), key=lambda p: p[0].name)
    out: sa.ColumnElement[Any] | None = None
    for i, (col, sel) in enumerate(pairs):
        key = ("{" if i == 0 else ",") + orjson.dumps(col.name).decode() + ":"
        inner = getattr(sel, "element", sel)  # the expression under its label
        part = _literal(key) + _value(col, inner)
        out = part if out is None else out + part
    if out is None:
        return _literal("{}")
    out = out + _literal("}")
    large = [
        sa.and_(sa.func.abs(inner) >= _float8("1e16"), sa.func.abs(inner) < _float8("Infinity"))
        for col, sel in pairs
        if col.kind is Kind.FLOAT
        for inner in [getattr(sel, "element", sel)]
    ]
    if not large:
        return out
    # A record holding a float PostgreSQL may write longer than orjson is marked (see
    # the module docstring) and re-encoded by orjson (`_canonical`).
    return sa.case((sa.or_(*large), MARK + out), else_=out)


def json_query(scan: Scan, entity: Entity) -> tuple[sa.Select[Any], list[Column]] | None:
    """The scan's query of `entity` selecting each record's JSON text instead of its
    columns (same rows, same order), or None when a column's type is not one
    `record_json` writes."""
    query, columns = scan.query(entity)
    selected = list(query.selected_columns)
    if not supported(columns, selected):
        return None
    record = record_json(columns, selected).label("record")
    out: sa.Select[Any] = query.with_only_columns(record, maintain_column_froms=False)
    return out, columns


def usable(scan: Scan) -> bool:
    """Whether this scan can read records as JSON text: PostgreSQL through psycopg with a
    libpq that fetches rows in chunks (17 and later: `Cursor.stream(size=...)`), and a
    UTF-8 database (the Python path's text is then the same characters)."""
    if not scan.postgres:
        return False
    raw = scan.conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection) or psycopg.pq.version() < 170000:
        return False
    encoding = scan.conn.exec_driver_sql("SHOW server_encoding").scalar()
    return bool(encoding == "UTF8")


def json_lines(
    scan: Scan, entity: Entity, batch_size: int
) -> Generator[tuple[bytes, int], None, None] | None:
    """The records of `entity` as (lines, count) of at most `batch_size` records each:
    each record's JSON text and a newline. None when `json_query` cannot write them."""
    built = json_query(scan, entity)
    if built is None:
        return None
    return _streamed(scan, built[0], batch_size)


def _streamed(
    scan: Scan, query: sa.Select[Any], batch_size: int
) -> Generator[tuple[bytes, int], None, None]:
    """Run `query` (one text column) in the scan's transaction, its values as UTF-8
    bytes (bytea in binary: no decoding, no escapes), `batch_size` rows per chunk from
    libpq (no cursor, no round trip per batch), joined by newlines."""
    (record,) = query.selected_columns
    utf8 = sa.func.convert_to(record, _literal("UTF8"), type_=sa.LargeBinary)
    compiled = query.with_only_columns(utf8).compile(dialect=scan.conn.dialect)
    params = compiled.construct_params()
    processors = getattr(compiled, "_bind_processors", {})
    params = {k: processors[k](v) if k in processors else v for k, v in params.items()}
    raw = scan.conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    with closing(raw.cursor(binary=True)) as cur:
        parts: list[bytes] = []
        for (value,) in cur.stream(str(compiled), params, size=batch_size):
            parts.append(value)
            if len(parts) == batch_size:
                yield _joined(parts), batch_size
                parts = []
        if parts:
            count = len(parts)
            yield _joined(parts), count


def _joined(values: list[bytes]) -> bytes:
    """The records, a newline after each, any marked one re-encoded by orjson."""
    count = len(values)
    lines = b"\n".join([*values, b""])  # a newline after the last record too
    if MARKED in lines:
        return _canonical(lines, count)
    return lines


def _canonical(lines: bytes, count: int) -> bytes:
    """`lines` with each marked record (a float PostgreSQL writes otherwise than orjson
    does: its shortest digits never end on the rounding boundary, orjson's may, so 1e23
    is 9.999999999999999e+22 to PostgreSQL) parsed and written again by orjson, the
    Python path's writer: its digits read back to the same double, every other value
    (texts, instants, integers) comes back in the form it had."""
    records = lines.split(b"\n")[:count]
    for i, record in enumerate(records):
        if record[:1] == MARKED:
            records[i] = orjson.dumps(orjson.loads(record[1:]), option=DIGEST_OPTS)
    records.append(b"")
    return b"\n".join(records)

"""A semester's bundle as format-neutral events (Header, Batch, Trailer) for file writers.

Reads through the same scan as StreamSession (ferry.bundle.scan). Record values are plain
Python: str, int, float, None; dates as "YYYY-MM-DD"; instants as aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch, Event, Header, Record, Trailer
from ferry.bundle.renames import add_renames
from ferry.bundle.scan import SessionRequest, fetcher, open_scan
from ferry.bundle.stream import fill_metadata
from ferry.datasets.query import Column
from ferry.datasets.spec import Dataset, Kind
from ferry.v1 import bundle_pb2 as pb

RowsToRecords = Callable[[Sequence[Sequence[Any]]], list[Record]]
UTC = dt.UTC


def instant(value: dt.datetime | None) -> dt.datetime | None:
    """`value` as an aware UTC datetime (naive values, as SQLite returns them, are UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def rows_to_records(columns: Sequence[Column], postgres: bool = False) -> RowsToRecords:
    """A function turning database rows into record dicts, generated once per entity
    (one dict display per row, no per-field dispatch). `postgres`: the rows of a
    PostgreSQL scan (ferry.bundle.scan), whose instants are already aware UTC datetimes
    and whose dates already "YYYY-MM-DD" strings, so both pass as they are.
    """
    items = []
    for i, col in enumerate(columns):
        if col.kind is Kind.TIMESTAMP:
            items.append(f"{col.name!r}: " + (f"r[{i}]" if postgres else f"_ts(r[{i}])"))
        elif col.kind is Kind.DATE and postgres:
            items.append(f"{col.name!r}: r[{i}]")
        elif col.kind is Kind.DATE:
            # Inline: a call per value costs more than the conversion itself.
            items.append(
                f"{col.name!r}: (r[{i}] if r[{i}] is None or r[{i}].__class__ is str "
                f"else r[{i}].isoformat())"
            )
        elif col.kind is Kind.FLOAT:
            items.append(f"{col.name!r}: _float(r[{i}])")
        else:
            items.append(f"{col.name!r}: r[{i}]")
    source = f"def convert(rows):\n    return [{{{', '.join(items)}}} for r in rows]\n"
    namespace: dict[str, Any] = {"_ts": instant, "_float": _float}
    exec(compile(source, f"<rows_to_records {len(columns)} columns>", "exec"), namespace)
    convert: RowsToRecords = namespace["convert"]
    return convert


def _float(value: float | int | None) -> float | None:
    # A FLOAT column may hold an integral value some drivers return as int.
    return None if value is None else float(value)


def session_events(
    engine: Engine, ds: Dataset, req: SessionRequest, now: dt.datetime | None = None
) -> Iterator[Event]:
    """Yield the bundle of `req.semester` as events: a Header (counts of the snapshot),
    one Batch of at most `req.batch_size` records at a time in dependency order, and a
    Trailer with the counts sent (its sha256 is left to the format that writes it).

    Raises NotFound for an unknown semester and InvalidArgument for a bad request.
    """
    with open_scan(engine, ds, req) as scan:
        meta = pb.BundleMetadata()
        fill_metadata(meta, ds, req, scan.counts, now, scan.school)
        add_renames(meta, scan.conn, scan.since)  # keys changed (issue 29)
        yield Header(meta, updated_since=instant(req.updated_since))
        sent: dict[str, int] = {}
        for entity in scan.entities:
            columns, result = scan.rows(entity)
            convert = rows_to_records(columns, scan.postgres)
            sent[entity.name] = 0
            fetchmany = fetcher(result)  # psycopg's tuples: see ferry.bundle.scan
            try:
                while rows := fetchmany(req.batch_size):
                    records = convert(rows)
                    sent[entity.name] += len(records)
                    yield Batch(entity.name, records)
            finally:
                result.close()
        yield Trailer(sent)

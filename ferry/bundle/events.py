"""A semester's bundle as format-neutral events (Header, Batch, Trailer) for file writers.

Reads through the same scan as StreamSession (ferry.bundle.scan). Record values are plain
Python: str, int, float, None; dates as "YYYY-MM-DD"; instants as aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from functools import partial
from typing import Any

from sqlalchemy.engine import Engine

from ferry.bundle import pgjson
from ferry.bundle.formats.base import Batch, Event, Header, JsonLines, Record, Trailer
from ferry.bundle.pipe import produced
from ferry.bundle.renames import add_renames
from ferry.bundle.scan import Scan, SessionRequest, fetcher, open_scan
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
    engine: Engine,
    ds: Dataset,
    req: SessionRequest,
    now: dt.datetime | None = None,
    read_ahead: int = 0,
    lines: bool = False,
) -> Iterator[Event]:
    """Yield the bundle of `req.semester` as events: a Header (counts of the snapshot),
    one Batch of at most `req.batch_size` records at a time in dependency order, and a
    Trailer with the counts sent (its sha256 is left to the format that writes it).

    `read_ahead` (PostgreSQL): fetch rows on a thread of their own, up to that many
    batches ahead of the records made of them, so the database computes the next rows
    while the last ones are written (DownloadSession: `FETCH_AHEAD`). Closing the
    generator stops that thread before the snapshot is released.

    `lines` (for a writer that takes them: `writes_lines`): on PostgreSQL the records
    come as JsonLines, encoded by the database (ferry.bundle.pgjson), instead of Batches
    of dicts; an entity whose columns it cannot encode comes as Batches, as before.

    Raises NotFound for an unknown semester and InvalidArgument for a bad request.
    """
    with open_scan(engine, ds, req) as scan:
        meta = pb.BundleMetadata()
        fill_metadata(meta, ds, req, scan.counts, now, scan.school)
        add_renames(meta, scan.conn, scan.since)  # keys changed (issue 29)
        yield Header(meta, updated_since=instant(req.updated_since))
        sent = {entity.name: 0 for entity in scan.entities}
        converts: dict[str, RowsToRecords] = {}
        if read_ahead > 0 and scan.postgres:
            fetched = produced(partial(_fetch, scan, lines), read_ahead, "bundle-fetch")
        else:
            fetched = _fetched(scan, lines)
        with closing(fetched):
            for item in fetched:
                if isinstance(item, JsonLines):
                    sent[item.entity] += item.count
                    yield item
                    continue
                name, columns, rows = item
                convert = converts.get(name)
                if convert is None:
                    convert = converts[name] = rows_to_records(columns, scan.postgres)
                records = convert(rows)
                sent[name] += len(records)
                yield Batch(name, records)
        yield Trailer(sent)


# (entity, its columns, rows), or records the database encoded
Fetched = tuple[str, list[Column], Sequence[Any]] | JsonLines


def _fetch(scan: Scan, lines: bool, put: Callable[[Fetched], None]) -> None:
    """`put` what `_fetched` yields; its cursors are closed in this thread, also when
    `put` raises because the consumer stopped."""
    with closing(_fetched(scan, lines)) as fetched:
        for item in fetched:
            put(item)


def _fetched(scan: Scan, lines: bool = False) -> Generator[Fetched, None, None]:
    """Each entity's rows in scan order, `req.batch_size` at a time (with `lines`, as
    JsonLines where ferry.bundle.pgjson can encode them); each cursor (or stream) is
    closed when its rows are done or the generator is closed."""
    encode = lines and pgjson.usable(scan)
    for entity in scan.entities:
        encoded = pgjson.json_lines(scan, entity, scan.req.batch_size) if encode else None
        if encoded is not None:
            with closing(encoded):
                for body, count in encoded:
                    yield JsonLines(entity.name, body, count)
            continue
        columns, result = scan.rows(entity)
        fetchmany = fetcher(result)  # psycopg's tuples: see ferry.bundle.scan
        try:
            while rows := fetchmany(scan.req.batch_size):
                yield entity.name, columns, rows
        finally:
            result.close()

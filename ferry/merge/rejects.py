"""Records an on_error=skip_invalid run left out, kept as JSON rows in import_rejects, and
given back as a re-importable bundle (Header, Batches, Trailer)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, cast

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ferry.bundle.formats.base import Batch, Event, Header, Trailer
from ferry.bundle.scan import FORMAT_VERSION
from ferry.datasets.spec import Dataset, Kind
from ferry.db import tenant
from ferry.db.import_models import ImportReject
from ferry.errors import FailedPrecondition
from ferry.merge.shape import Shape, q
from ferry.merge.store import get_import
from ferry.v1 import bundle_pb2 as pb

T = cast(sa.Table, ImportReject.__table__)
BATCH = 1000


def json_safe(value: Any) -> Any:
    """A value as JSON can hold it (instants and days as ISO text)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def save(
    conn: Connection, import_id: str, entity: str, records: list[tuple[int, dict[str, Any]]]
) -> None:
    """Store rejected records as they arrived."""
    if records:
        conn.execute(
            T.insert(),
            [
                {
                    "import_id": import_id,
                    "entity": entity,
                    "position": pos,
                    "record": {k: json_safe(v) for k, v in rec.items()},
                }
                for pos, rec in records
            ],
        )


def create_staged(conn: Connection, table: str) -> None:
    """(Re)create the UNLOGGED table that holds refused records while an import stages
    on its own connection (ferry.merge.pipeline)."""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    conn.exec_driver_sql(
        f"CREATE UNLOGGED TABLE {table} (entity TEXT, position INTEGER, record JSONB)"
    )


def save_staged(
    conn: Connection, table: str, entity: str, records: list[tuple[int, dict[str, Any]]]
) -> None:
    """Store refused records in the staging table `table`."""
    if records:
        conn.execute(
            sa.text(f"INSERT INTO {table} (entity, position, record) VALUES (:e, :p, :r)"),
            [
                {
                    "e": entity,
                    "p": pos,
                    "r": orjson.dumps({k: json_safe(v) for k, v in rec.items()}).decode(),
                }
                for pos, rec in records
            ],
        )


def adopt_staged(conn: Connection, table: str, import_id: str) -> None:
    """Move the records of staging table `table` into import_rejects, for `import_id`."""
    conn.execute(
        sa.text(
            "INSERT INTO import_rejects (import_id, entity, position, record) "
            f"SELECT :iid, entity, position, record FROM {table} ORDER BY entity, position"
        ),
        {"iid": import_id},
    )


def save_resolved(conn: Connection, import_id: str, shape: Shape, sqlite: bool) -> None:
    """Store the records rejected in SQL (duplicate keys, missing parents)."""
    names = [c.name for c in shape.cols if shape.carries(c.name)]  # as the file had them
    result = conn.exec_driver_sql(
        f"SELECT pos, {', '.join(q(n) for n in names)} FROM {shape.resolved} "
        "WHERE st = 'error' AND ok = 1 ORDER BY pos"
    )
    timestamps = {c.name for c in shape.cols if c.kind is Kind.TIMESTAMP}
    while rows := result.fetchmany(BATCH):
        batch = []
        for row in rows:
            rec = dict(zip(names, row[1:], strict=True))
            if sqlite:
                for n in timestamps:
                    if isinstance(rec[n], str):
                        rec[n] = dt.datetime.fromisoformat(rec[n]).replace(tzinfo=dt.UTC)
            batch.append((int(row[0]), rec))
        save(conn, import_id, shape.name, batch)


def rejected_events(engine: Engine, ds: Dataset, import_id: str) -> Iterator[Event]:
    """The records import `import_id` rejected, as a bundle: Header, Batches in dependency
    order, Trailer. NotFound for an unknown import; FailedPrecondition when it kept none."""
    outcome = get_import(engine, import_id)
    if not outcome.has_rejected_file:
        raise FailedPrecondition(f"import {import_id!r} has no rejected records", field="import_id")
    with engine.connect() as conn:
        counts = {
            e: int(n)
            for e, n in conn.execute(
                sa.select(T.c.entity, sa.func.count())
                .where(T.c.import_id == import_id, T.c.school_id == tenant.school_id())
                .group_by(T.c.entity)
            )
        }
    meta = pb.BundleMetadata(
        semester=outcome.semester,
        format_version=FORMAT_VERSION,
        dataset=ds.name,
        counts=counts,
        entity_order=[e.name for e in ds.in_order() if e.name in counts],
    )
    meta.exported_at.FromDatetime(dt.datetime.now(dt.UTC))
    return _events(engine, ds, import_id, meta, counts)


def _events(
    engine: Engine, ds: Dataset, import_id: str, meta: pb.BundleMetadata, counts: dict[str, int]
) -> Iterator[Event]:
    yield Header(meta)
    with engine.connect() as conn:
        for entity in ds.in_order():
            if entity.name not in counts:
                continue
            instants = {f.name for f in entity.fields if f.kind is Kind.TIMESTAMP}
            result = conn.execution_options(stream_results=True).execute(
                sa.select(T.c.record)
                .where(
                    T.c.import_id == import_id,
                    T.c.entity == entity.name,
                    T.c.school_id == tenant.school_id(),
                )
                .order_by(T.c.position, T.c.id)
            )
            while rows := result.fetchmany(BATCH):
                yield Batch(entity.name, [_restore(r[0], instants) for r in rows])
    yield Trailer(counts=counts)


def _restore(record: dict[str, Any], instants: set[str]) -> dict[str, Any]:
    out = dict(record)
    for name in instants:
        value = out.get(name)
        if isinstance(value, str):
            try:
                out[name] = dt.datetime.fromisoformat(value)
            except ValueError:
                continue  # left as text: it was rejected for being bad, it stays bad
    return out

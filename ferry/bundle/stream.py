"""A semester's bundle as a stream of typed chunks: header, record batches, trailer.

Rows come from server-side cursors inside one read-only snapshot, so the counts in the
header match the records sent and memory stays flat however large the semester is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ferry.bundle.records import row_writer
from ferry.datasets.query import count_in_scope, export_query
from ferry.datasets.spec import Dataset
from ferry.errors import InvalidArgument, NotFound
from ferry.v1 import bundle_pb2 as pb

# Bumped when a bundle's meaning changes; readers upgrade older versions.
FORMAT_VERSION = 1
# Record batches aim at this size and never exceed MAX_BATCH_BYTES (gRPC's limit is 4 MiB).
TARGET_BATCH_BYTES = 256 * 1024
MAX_BATCH_BYTES = 1024 * 1024
MAX_BATCH_RECORDS = 10_000

T = TypeVar("T")
# Returns (message to send, the BundleChunk inside it to fill). Filling the chunk in place
# lets a caller wrap it (e.g. in StreamSessionResponse) without copying records.
ChunkFactory = Callable[[], tuple[T, pb.BundleChunk]]


@dataclass(frozen=True)
class SessionRequest:
    semester: str
    include_deleted: bool = False
    batch_size: int = 2000
    exported_by: str = ""


def snapshot(engine: Engine) -> Connection:
    """A connection whose reads all see one consistent snapshot of the database."""
    if engine.dialect.name == "postgresql":
        conn = engine.connect().execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        conn.begin()
        # Every row will be read: plan for the whole result, not for the first 10%.
        conn.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
        return conn
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")  # pysqlite would not open a read transaction itself
    return conn


def semester_exists(conn: Connection, ds: Dataset, value: str) -> bool:
    """True when any row of the dataset's scope-root entity carries `value` (deleted too)."""
    root = ds.scope_root()
    column = next(r.column for r in root.scope if r.column)
    return (
        conn.execute(sa.select(sa.literal(1)).where(root.table.c[column] == value).limit(1)).first()
        is not None
    )


def stream_session(
    engine: Engine,
    ds: Dataset,
    req: SessionRequest,
    new_chunk: ChunkFactory[T],
    now: dt.datetime | None = None,
) -> Iterator[T]:
    """Yield the bundle of `req.semester`: header, record batches in dependency order,
    trailer with counts and the sha256 over every batch's deterministic serialization.

    Raises NotFound when the semester does not exist and InvalidArgument for a bad request.
    """
    if not req.semester.strip():
        raise InvalidArgument(f"{ds.scope_name} is required", field=ds.scope_name)
    if not 1 <= req.batch_size <= MAX_BATCH_RECORDS:
        raise InvalidArgument(
            f"batch_size must be between 1 and {MAX_BATCH_RECORDS}", field="batch_size"
        )
    entities = ds.in_order()
    with snapshot(engine) as conn:
        if not semester_exists(conn, ds, req.semester):
            raise NotFound(f"{ds.scope_name} {req.semester!r} does not exist", field=ds.scope_name)
        counts = {
            e.name: int(
                conn.execute(count_in_scope(ds, e, req.semester, req.include_deleted)).scalar_one()
            )
            for e in entities
        }
        out, chunk = new_chunk()
        meta = chunk.header.metadata
        meta.semester = req.semester
        meta.exported_at.FromDatetime(now or dt.datetime.now(dt.UTC))
        meta.exported_by = req.exported_by
        meta.format_version = FORMAT_VERSION
        meta.dataset = ds.name
        meta.counts.update(counts)
        meta.include_deleted = req.include_deleted
        meta.entity_order.extend(e.name for e in entities)
        yield out

        digest = hashlib.sha256()
        sent: dict[str, int] = {}
        for entity in entities:
            query, columns = export_query(ds, entity, req.semester, req.include_deleted)
            write = row_writer(columns)
            result = conn.execution_options(stream_results=True, yield_per=req.batch_size).execute(
                query
            )
            n = min(req.batch_size, 500)  # first batch small; later ones sized by bytes
            sent[entity.name] = 0
            while rows := result.fetchmany(n):
                for message, data, count in _batches(entity.name, rows, write, new_chunk):
                    digest.update(data)
                    sent[entity.name] += count
                    yield message
                    per_record = max(1, len(data) // max(count, 1))
                    n = max(1, min(req.batch_size, TARGET_BATCH_BYTES // per_record))
            result.close()
        out, chunk = new_chunk()
        chunk.trailer.counts.update(sent)
        chunk.trailer.sha256 = digest.hexdigest()
        chunk.trailer.total_records = sum(sent.values())
        yield out


def _batches(
    field: str, rows: Sequence[Any], write: Any, new_chunk: ChunkFactory[T]
) -> Iterator[tuple[T, bytes, int]]:
    """One message for `rows`, split in halves until each is under MAX_BATCH_BYTES."""
    out, chunk = new_chunk()
    count = write(getattr(chunk.records, field), rows)
    data = chunk.records.SerializeToString(deterministic=True)
    if len(data) <= MAX_BATCH_BYTES or len(rows) == 1:
        yield out, data, count
        return
    half = len(rows) // 2
    yield from _batches(field, rows[:half], write, new_chunk)
    yield from _batches(field, rows[half:], write, new_chunk)


def batch_digest(batches: Iterator[pb.RecordBatch]) -> str:
    """The trailer's sha256 recomputed over received record batches (for verifying)."""
    digest = hashlib.sha256()
    for batch in batches:
        digest.update(batch.SerializeToString(deterministic=True))
    return digest.hexdigest()

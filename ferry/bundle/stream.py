"""A semester's bundle as a stream of typed chunks: header, record batches, trailer.

Rows come from server-side cursors inside one read-only snapshot (ferry.bundle.scan), so
the counts in the header match the records sent and memory stays flat however large the
semester is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from ferry.bundle.records import row_writer
from ferry.bundle.renames import add_renames
from ferry.bundle.scan import (
    BINARY_EPOCH,
    FORMAT_VERSION,
    MAX_BATCH_RECORDS,
    SessionRequest,
    fetcher,
    open_scan,
    semester_exists,
    snapshot,
)
from ferry.datasets.spec import Dataset
from ferry.v1 import bundle_pb2 as pb

__all__ = [
    "FORMAT_VERSION",
    "MAX_BATCH_RECORDS",
    "SessionRequest",
    "batch_digest",
    "fill_metadata",
    "semester_exists",
    "snapshot",
    "stream_session",
]

# Record batches aim at this size and never exceed MAX_BATCH_BYTES (gRPC's limit is 4 MiB).
TARGET_BATCH_BYTES = 256 * 1024
MAX_BATCH_BYTES = 1024 * 1024

T = TypeVar("T")
W = TypeVar("W")
# Returns (message to send, the BundleChunk inside it to fill). Filling the chunk in place
# lets a caller wrap it (e.g. in StreamSessionResponse) without copying records.
ChunkFactory = Callable[[], tuple[T, pb.BundleChunk]]
# Seconds from 1970 to PostgreSQL's epoch, the start of the instants its binary form sends.
_PG_EPOCH = int(BINARY_EPOCH.timestamp())


def fill_metadata(
    meta: pb.BundleMetadata,
    ds: Dataset,
    req: SessionRequest,
    counts: dict[str, int],
    now: dt.datetime | None,
    school: str = "",
) -> None:
    """Fill `meta` for a bundle of `req` holding `counts` records per entity."""
    meta.semester = req.semester
    meta.exported_at.FromDatetime(now or dt.datetime.now(dt.UTC))
    meta.exported_by = req.exported_by
    meta.format_version = FORMAT_VERSION
    meta.dataset = ds.name
    meta.counts.update(counts)
    meta.include_deleted = req.with_deleted
    meta.entity_order.extend(ds.order)
    if req.updated_since is not None:
        meta.updated_since.FromDatetime(req.updated_since)
    if req.whole:
        meta.scope = req.scope
    meta.school = school


def stream_session(
    engine: Engine,
    ds: Dataset,
    req: SessionRequest,
    new_chunk: ChunkFactory[T],
    now: dt.datetime | None = None,
    wire: Callable[[bytes], W] | None = None,
) -> Iterator[T | W]:
    """Yield the bundle of `req.semester`: header, record batches in dependency order,
    trailer with counts and the sha256 over every batch's deterministic serialization.

    `wire`: a record batch is yielded as `wire(its serialization)` (the bytes the digest
    read) instead of as the message new_chunk made, for a caller that sends bytes as
    they are (the gRPC servicer: each batch is serialized once, not again for the wire).

    Raises NotFound when the semester does not exist and InvalidArgument for a bad request.
    """
    with open_scan(engine, ds, req) as scan:
        out, chunk = new_chunk()
        fill_metadata(chunk.header.metadata, ds, req, scan.counts, now, scan.school)
        add_renames(chunk.header.metadata, scan.conn, scan.since)  # keys changed (issue 29)
        yield out

        digest = hashlib.sha256()
        sent: dict[str, int] = {}
        for entity in scan.entities:
            if scan.postgres:  # PostgreSQL's binary form: instants as int8 since 2000
                columns, cursor = scan.binary_rows(entity)
                write = row_writer(columns, micros=True, epoch=_PG_EPOCH, text_dates=True)
                fetchmany, close = cursor.fetchmany, cursor.close
            else:
                columns, result = scan.rows(entity)
                write = row_writer(columns)
                fetchmany, close = fetcher(result), result.close
            n = min(req.batch_size, 500)  # first batch small; later ones sized by bytes
            sent[entity.name] = 0
            try:
                while rows := fetchmany(n):
                    for message, data, count in _batches(entity.name, rows, write, new_chunk):
                        digest.update(data)
                        sent[entity.name] += count
                        yield message if wire is None else wire(data)
                        per_record = max(1, len(data) // max(count, 1))
                        n = max(1, min(req.batch_size, TARGET_BATCH_BYTES // per_record))
            finally:
                close()
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

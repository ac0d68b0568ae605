"""Typed bundle chunks (StreamSession's BundleChunk messages) <-> format-neutral events.

The import service receives BundleChunks from other services and reads them as events,
like a file; a service holding events can send them as chunks. Conversion checks the
trailer: counts and the sha256 over the RecordBatches' deterministic serialization.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from google.protobuf.message import Message

from ferry.bundle.formats.base import Batch, Event, Header, Record, Trailer
from ferry.bundle.formats.common import schema
from ferry.bundle.records import timestamp
from ferry.bundle.stream import MAX_BATCH_BYTES
from ferry.datasets.query import Column
from ferry.datasets.spec import Kind
from ferry.errors import DataLoss, InvalidArgument
from ferry.v1 import bundle_pb2 as pb

UTC = dt.UTC


def _reader(message: type[Message], columns: dict[str, Column]) -> Callable[[Any], Record]:
    """A function turning one typed record into a record dict."""
    descriptor = message.DESCRIPTOR
    plan: list[tuple[str, str]] = []  # (name, how)
    for name, col in columns.items():
        fd = descriptor.fields_by_name[name]
        if col.kind is Kind.TIMESTAMP:
            plan.append((name, "ts"))
        elif fd.has_presence:
            plan.append((name, "optional"))
        elif col.nullable:
            plan.append((name, "empty_is_null"))  # e.g. a nullable date travels as ""
        else:
            plan.append((name, "plain"))

    def read(msg: Any) -> Record:
        out: Record = {}
        for name, how in plan:
            if how == "plain":
                out[name] = getattr(msg, name)
            elif how == "ts":
                out[name] = getattr(msg, name).ToDatetime(UTC) if msg.HasField(name) else None
            elif how == "optional":
                out[name] = getattr(msg, name) if msg.HasField(name) else None
            else:
                out[name] = getattr(msg, name) or None
        return out

    return read


def chunks_to_events(chunks: Iterable[pb.BundleChunk]) -> Iterator[Event]:
    """Events for a typed chunk stream: Header, a Batch per RecordBatch, Trailer.

    Raises InvalidArgument for a stream out of order and DataLoss when the trailer's
    counts or sha256 do not match the batches received.
    """
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    readers: dict[str, Callable[[Any], Record]] = {}
    fields: dict[str, dict[str, Column]] | None = None
    for n, chunk in enumerate(chunks):
        kind = chunk.WhichOneof("chunk")
        if n == 0 and kind != "header":
            raise InvalidArgument("a bundle stream starts with a header", field="chunk")
        if kind == "header":
            if n:
                raise InvalidArgument(f"a second header at message {n}", field="chunk")
            meta = pb.BundleMetadata()
            meta.CopyFrom(chunk.header.metadata)
            fields = schema(meta.dataset or "school")
            since = (
                meta.updated_since.ToDatetime(dt.UTC) if meta.HasField("updated_since") else None
            )
            yield Header(meta, updated_since=since)
        elif kind == "records":
            assert fields is not None
            digest.update(chunk.records.SerializeToString(deterministic=True))
            for fd, values in chunk.records.ListFields():
                entity = fd.name
                if entity not in readers:
                    if entity not in fields:
                        raise InvalidArgument(f"unknown entity {entity!r}", field=entity)
                    readers[entity] = _reader(type(values[0]), fields[entity])
                read = readers[entity]
                counts[entity] = counts.get(entity, 0) + len(values)
                yield Batch(entity, [read(v) for v in values])
        elif kind == "trailer":
            t = chunk.trailer
            claimed = {k: v for k, v in t.counts.items() if v}
            if claimed != {k: v for k, v in counts.items() if v}:
                raise DataLoss(
                    f"trailer counts {claimed} differ from the records received {counts}",
                    field="trailer.counts",
                )
            if t.sha256 != digest.hexdigest():
                raise DataLoss(
                    f"trailer sha256 {t.sha256} differs from the batches received "
                    f"({digest.hexdigest()})",
                    field="trailer.sha256",
                )
            yield Trailer(dict(counts), t.sha256)
            return
        else:
            raise InvalidArgument(f"message {n} is empty", field="chunk")
    raise InvalidArgument("the bundle stream ended without a trailer", field="trailer")


def _writer(columns: dict[str, Column]) -> Callable[[Any, list[Record]], None]:
    stamps = [n for n, c in columns.items() if c.kind is Kind.TIMESTAMP]

    def write(target: Any, records: list[Record]) -> None:
        add = target.add
        for r in records:
            kw = {k: v for k, v in r.items() if v is not None}
            for name in stamps:
                if name in kw:
                    kw[name] = timestamp(kw[name])
            add(**kw)

    return write


def events_to_chunks(
    events: Iterable[Event], batch_records: int = 2000
) -> Iterator[pb.BundleChunk]:
    """Typed chunks for events: the header, RecordBatches of at most `batch_records` (and
    under 1 MiB), and a trailer with counts and the sha256 of the batches."""
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    writers: dict[str, Callable[[Any, list[Record]], None]] = {}
    fields: dict[str, dict[str, Column]] = {}
    for event in events:
        if isinstance(event, Header):
            fields = schema(event.metadata.dataset or "school")
            chunk = pb.BundleChunk()
            chunk.header.metadata.CopyFrom(event.metadata)
            yield chunk
        elif isinstance(event, Batch):
            if event.entity not in writers:
                if event.entity not in fields:
                    raise InvalidArgument(f"unknown entity {event.entity!r}", field=event.entity)
                writers[event.entity] = _writer(fields[event.entity])
            for i in range(0, len(event.records), batch_records):
                for chunk in _split(event.entity, event.records[i : i + batch_records], writers):
                    digest.update(chunk.records.SerializeToString(deterministic=True))
                    n = len(getattr(chunk.records, event.entity))
                    counts[event.entity] = counts.get(event.entity, 0) + n
                    yield chunk
        else:
            chunk = pb.BundleChunk()
            chunk.trailer.counts.update(counts)
            chunk.trailer.sha256 = digest.hexdigest()
            chunk.trailer.total_records = sum(counts.values())
            yield chunk


def _split(
    entity: str, records: list[Record], writers: dict[str, Callable[[Any, list[Record]], None]]
) -> Iterator[pb.BundleChunk]:
    chunk = pb.BundleChunk()
    writers[entity](getattr(chunk.records, entity), records)
    if chunk.records.ByteSize() <= MAX_BATCH_BYTES or len(records) == 1:
        yield chunk
        return
    half = len(records) // 2
    yield from _split(entity, records[:half], writers)
    yield from _split(entity, records[half:], writers)

"""StreamSession's record batches in wire form (issue 27): the servicer sends the bytes the
trailer's digest serialized, framed by hand as StreamSessionResponse{chunk: {records}}.
The framing must be exactly what protobuf writes for that message, for a payload of any
length (the varint lengths change width at 128, 16,384, 2,097,152 bytes), and a stream
read that way must be the stream of messages, byte for byte, digest included."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.bundle.chunks import chunks_to_events
from ferry.bundle.events import session_events
from ferry.bundle.scan import SessionRequest
from ferry.bundle.stream import stream_session
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.rpc.wire import nested, passthrough, varint
from ferry.v1 import bundle_pb2 as pb
from ferry.v1 import export_pb2
from services.export.sessions import _records_wire, _response
from tests.bundle.helpers import records_of
from tests.conftest import copied_database, migrated_and_seeded

EDGES = [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152]


def course(title: str) -> pb.Course:
    return pb.Course(course_code="C1", semester="2026-fall", title=title)


@pytest.mark.parametrize("size", EDGES)
def test_the_framing_is_what_protobuf_writes(size: int) -> None:
    batch = pb.RecordBatch(courses=[course("x" * size)]) if size else pb.RecordBatch()
    data = batch.SerializeToString(deterministic=True)
    want = export_pb2.StreamSessionResponse(chunk=pb.BundleChunk(records=batch))
    assert _records_wire(data) == want.SerializeToString(deterministic=True)
    got = export_pb2.StreamSessionResponse.FromString(_records_wire(data))
    assert got.chunk.WhichOneof("chunk") == "records"  # an empty batch is still "records"
    assert got == want


@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_varint_is_protobufs(n: int) -> None:
    # BundleTrailer.total_records (int64, field 3): its tag 0x18, then n as a varint.
    assert pb.BundleTrailer(total_records=n).SerializeToString() == b"\x18" + varint(n)


def test_nested_and_passthrough_on_odd_input() -> None:
    with pytest.raises(ValueError):
        varint(-1)
    assert nested((), b"\x00abc") == b"\x00abc"  # no path: the payload itself
    assert passthrough(b"\x00\xff") == b"\x00\xff"
    message = export_pb2.StreamSessionResponse(chunk=pb.BundleChunk(records=pb.RecordBatch()))
    assert passthrough(message) == message.SerializeToString()


def test_the_wire_stream_is_the_message_stream(seeded_url: str) -> None:
    """Deleted records too; a small batch size so there are many batches."""
    engine = make_engine(seeded_url)
    try:
        req = SessionRequest("2026-fall", include_deleted=True, batch_size=7)
        messages = [m.SerializeToString() for m in stream_session(engine, SCHOOL, req, _response)]
        sent = [
            m if isinstance(m, bytes) else m.SerializeToString()
            for m in stream_session(engine, SCHOOL, req, _response, wire=_records_wire)
        ]
    finally:
        engine.dispose()
    headers = [export_pb2.StreamSessionResponse.FromString(b) for b in (messages[0], sent[0])]
    for h in headers:
        h.chunk.header.metadata.ClearField("exported_at")  # the time of each run
    assert headers[0] == headers[1]
    assert len(sent) == len(messages) > 3
    assert sent[1:] == messages[1:]  # every batch and the trailer (its sha256 and counts)


# (created_at, updated_at) written over the first courses, grades and attendance rows:
# around PostgreSQL's binary epoch (2000-01-01, from which Scan.binary_rows reads
# instants as int8), around 1970, far before and after.
INSTANTS = [
    ("1999-12-31 23:59:59.999999+00", "2000-01-01 00:00:00+00"),
    ("2000-01-01 00:00:00.000001+00", "1970-01-01 00:00:00+00"),
    ("1969-12-31 23:59:59.5+00", "0001-01-01 00:00:00+00"),
    ("9999-12-31 23:59:59.999999+00", "2038-01-19 03:14:08+00"),
]


@pytest.mark.postgres
def test_binary_instants_are_the_datetimes_the_file_bundles_read(tmp_path: Path) -> None:
    """The stream's instants (binary int8 since 2000, split in the row writer) against
    the file bundles' (psycopg datetimes), and a soft-deletion instant too."""
    build = migrated_and_seeded("small", 7)
    with copied_database("postgres", tmp_path, "seeded-small-7", build) as url:
        dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(dsn) as conn:
            for table in ("courses", "grades", "attendance"):
                ids = [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id LIMIT 4")]
                for row_id, (created, updated) in zip(ids, INSTANTS, strict=True):
                    conn.execute(
                        f"UPDATE {table} SET created_at = %s, updated_at = %s, deleted_at = %s "
                        "WHERE id = %s",
                        (created, updated, updated, row_id),
                    )
        streamed, _ = _streamed_and_filed(
            url, SessionRequest("", include_deleted=True, scope="all")
        )
    seen = {r[k] for _, r in streamed for k in ("created_at", "updated_at", "deleted_at")}
    for pair in INSTANTS:
        for text in pair:
            assert dt.datetime.fromisoformat(text.replace(" ", "T") + ":00") in seen, text


def _chunk() -> tuple[pb.BundleChunk, pb.BundleChunk]:
    c = pb.BundleChunk()
    return c, c


def _streamed_and_filed(url: str, req: SessionRequest) -> tuple[list[Any], list[Any]]:
    """The records StreamSession sends for `req`, checked equal to those the file
    bundles' reader gives for it, and the stream's chunks."""
    engine = make_engine(url)
    try:
        chunks = list(stream_session(engine, SCHOOL, req, _chunk))
        events = list(session_events(engine, SCHOOL, req))
    finally:
        engine.dispose()
    streamed = records_of(list(chunks_to_events(chunks)))
    assert streamed == records_of(events)
    return streamed, chunks


@pytest.mark.parametrize("since", [None, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)])
def test_streamed_records_are_the_file_bundles_records(
    seeded_url: str, since: dt.datetime | None
) -> None:
    """The stream's rows (on PostgreSQL the binary cursor, its parameters bound by
    psycopg: the semester, and for a delta the instant and the renames' entity) against
    the file bundles' reader of the same request (SQLAlchemy, datetimes)."""
    req = SessionRequest("2026-fall", include_deleted=True, updated_since=since)
    streamed, chunks = _streamed_and_filed(seeded_url, req)
    assert len(streamed) == chunks[-1].trailer.total_records > 0

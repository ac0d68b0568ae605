"""Typed BundleChunks <-> events, and the one scan StreamSession and file bundles share."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.bundle.chunks import chunks_to_events, events_to_chunks
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Batch, Header, Trailer
from ferry.bundle.scan import SessionRequest
from ferry.bundle.stream import batch_digest, stream_session
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.errors import DataLoss, InvalidArgument, NotFound
from ferry.v1 import bundle_pb2 as pb
from tests.bundle.helpers import COURSE, events_of, records_of


def new_chunk() -> tuple[pb.BundleChunk, pb.BundleChunk]:
    c = pb.BundleChunk()
    return c, c


def test_stream_session_chunks_read_as_the_same_records_as_session_events(
    seeded_url: str,
) -> None:
    engine = make_engine(seeded_url)
    try:
        req = SessionRequest("2026-fall", include_deleted=True, batch_size=100)
        chunks = list(stream_session(engine, SCHOOL, req, new_chunk))
        direct = list(session_events(engine, SCHOOL, req))
    finally:
        engine.dispose()
    via_chunks = list(chunks_to_events(chunks))
    assert records_of(via_chunks) == records_of(direct)
    head, tail = via_chunks[0], via_chunks[-1]
    assert isinstance(head, Header) and isinstance(tail, Trailer)
    assert head.metadata.counts == direct[0].metadata.counts  # type: ignore[union-attr]
    assert tail.sha256 == chunks[-1].trailer.sha256
    assert all(len(e.records) <= 100 for e in direct if isinstance(e, Batch))


def test_events_to_chunks_round_trips_and_signs_the_batches() -> None:
    events = events_of({"courses": [COURSE] * 5, "grades": []})
    chunks = list(events_to_chunks(events, batch_records=2))
    assert [c.WhichOneof("chunk") for c in chunks] == ["header"] + ["records"] * 3 + ["trailer"]
    assert batch_digest(iter(c.records for c in chunks[1:-1])) == chunks[-1].trailer.sha256
    assert records_of(chunks_to_events(chunks)) == records_of(events)


def test_chunks_with_a_wrong_trailer_are_data_loss() -> None:
    chunks = list(events_to_chunks(events_of({"courses": [COURSE, COURSE]})))
    chunks[1].records.courses[0].title = "changed"
    with pytest.raises(DataLoss, match="trailer sha256"):
        list(chunks_to_events(chunks))
    chunks = list(events_to_chunks(events_of({"courses": [COURSE, COURSE]})))
    chunks[-1].trailer.counts["courses"] = 3
    with pytest.raises(DataLoss, match="trailer counts"):
        list(chunks_to_events(chunks))


@pytest.mark.parametrize(
    ("drop", "message"), [(0, "starts with a header"), (-1, "ended without a trailer")]
)
def test_chunks_out_of_shape_are_invalid_argument(drop: int, message: str) -> None:
    chunks: list[Any] = list(events_to_chunks(events_of({"courses": [COURSE]})))
    del chunks[drop]
    with pytest.raises(InvalidArgument, match=message):
        list(chunks_to_events(chunks))


def test_session_events_check_the_request(seeded_url: str) -> None:
    engine = make_engine(seeded_url)
    try:
        with pytest.raises(NotFound, match="1999-fall"):
            next(session_events(engine, SCHOOL, SessionRequest("1999-fall")))
        with pytest.raises(InvalidArgument, match="semester is required"):
            next(session_events(engine, SCHOOL, SessionRequest(" ")))
    finally:
        engine.dispose()

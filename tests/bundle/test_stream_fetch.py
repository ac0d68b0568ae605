"""StreamSession reads PostgreSQL rows through psycopg's own cursor once SQLAlchemy has
handed over the row it read ahead: every record is sent once, whatever the batch size
(1: the handed-over row alone is the first batch), and the trailer still signs them."""

from __future__ import annotations

import pytest

from ferry.bundle.chunks import chunks_to_events
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Batch
from ferry.bundle.scan import SessionRequest
from ferry.bundle.stream import batch_digest, stream_session
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.v1 import bundle_pb2 as pb
from tests.bundle.helpers import records_of


def new_chunk() -> tuple[pb.BundleChunk, pb.BundleChunk]:
    c = pb.BundleChunk()
    return c, c


@pytest.mark.parametrize("batch_size", [1, 7, 2000])
def test_every_record_once_whatever_the_batch_size(seeded_url: str, batch_size: int) -> None:
    engine = make_engine(seeded_url)
    try:
        req = SessionRequest("2026-fall", include_deleted=True, batch_size=batch_size)
        chunks = list(stream_session(engine, SCHOOL, req, new_chunk))
        events = list(session_events(engine, SCHOOL, SessionRequest("2026-fall", True)))
    finally:
        engine.dispose()
    header, trailer, batches = chunks[0].header, chunks[-1].trailer, chunks[1:-1]
    sent: dict[str, int] = {}
    for c in batches:
        for field, values in c.records.ListFields():
            assert 0 < len(values) <= batch_size
            sent[field.name] = sent.get(field.name, 0) + len(values)
    # The same records, in the same order, as the file bundles' reader of the same scan.
    assert records_of(list(chunks_to_events(chunks))) == records_of(events)
    assert sent == {k: v for k, v in header.metadata.counts.items() if v}
    assert trailer.total_records == sum(header.metadata.counts.values()) > 0
    assert batch_digest(iter(c.records for c in batches)) == trailer.sha256


def test_an_entity_of_one_row_ends_its_scan_cleanly(empty_url: str) -> None:
    """SQLAlchemy closes the cursor when its first fetch finds nothing behind the row it
    read ahead (an entity of exactly one row): the next fetch must end the entity, not
    ask the closed cursor ("the cursor is closed" failed every bundle of such a school)."""
    from tests.reports.helpers import SEM, build

    engine = make_engine(empty_url)
    try:
        build(engine)  # the reports' hand-computed school: several entities of one row
        req = SessionRequest(SEM, include_deleted=True)
        events = list(session_events(engine, SCHOOL, req))
        chunks = list(stream_session(engine, SCHOOL, req, new_chunk))
    finally:
        engine.dispose()
    counts = dict(chunks[0].header.metadata.counts)
    assert 1 in counts.values(), counts  # the case under test is there
    assert records_of(list(chunks_to_events(chunks))) == records_of(events)
    assert chunks[-1].trailer.total_records == sum(counts.values())
    sent: dict[str, int] = {}
    for e in events:
        if isinstance(e, Batch):
            sent[e.entity] = sent.get(e.entity, 0) + len(e.records)
    assert sent == {k: v for k, v in counts.items() if v}

"""StreamSession reads PostgreSQL rows through psycopg's own cursor once SQLAlchemy has
handed over the row it read ahead: every record is sent once, whatever the batch size
(1: the handed-over row alone is the first batch), and the trailer still signs them."""

from __future__ import annotations

import pytest

from ferry.bundle.chunks import chunks_to_events
from ferry.bundle.events import session_events
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

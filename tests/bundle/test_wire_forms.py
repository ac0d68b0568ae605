"""What the bundle producers read in the database's own forms (issue 27) is what they
read before: on PostgreSQL a scan reads dates as text and, for StreamSession, instants as
int8 microseconds since 1970; the jsonl and tar.gz writers encode a batch in one call and
split it into lines. Instants before 1970, with and without a fraction, and texts holding
the separator the split looks for, come out as the per-value path writes them."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import orjson
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferry.bundle.chunks import chunks_to_events
from ferry.bundle.events import session_events
from ferry.bundle.formats.common import DIGEST_OPTS, record_lines
from ferry.bundle.scan import SessionRequest
from ferry.bundle.stream import stream_session
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.v1 import bundle_pb2 as pb
from tests.bundle.helpers import any_courses, decode, encode, events_of, records_of
from tests.conftest import copied_database, migrated_and_seeded

TRICKY = ["},{", 'a},{"b":1}', "}}\n", "{", "}", 'x"y', "Ελληνικά 😀", "\u2028"]

# (created_at, updated_at) written over the first courses and attendance rows.
INSTANTS = [
    ("1969-12-31 23:59:59.5+00", "1970-01-01 00:00:00+00"),
    ("1900-01-01 00:00:00.000001+00", "1969-12-31 23:59:59+00"),
    ("2038-01-19 03:14:08.999999+00", "2026-09-01 08:30:00.1+00"),
]


def new_chunk() -> tuple[pb.BundleChunk, pb.BundleChunk]:
    c = pb.BundleChunk()
    return c, c


@pytest.mark.postgres
def test_stream_instants_and_dates_as_the_datetime_path_gives(tmp_path: Path) -> None:
    build = migrated_and_seeded("small", 7)
    with copied_database("postgres", tmp_path, "seeded-small-7", build) as url:
        dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(dsn) as conn:
            for table in ("courses", "attendance", "grades"):
                ids = [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id LIMIT 3")]
                for row_id, (created, updated) in zip(ids, INSTANTS, strict=True):
                    conn.execute(
                        f"UPDATE {table} SET created_at = %s, updated_at = %s WHERE id = %s",
                        (created, updated, row_id),
                    )
        engine = make_engine(url)
        try:
            req = SessionRequest("", include_deleted=True, scope="all")
            chunks = list(stream_session(engine, SCHOOL, req, new_chunk))
            events = list(session_events(engine, SCHOOL, req))
        finally:
            engine.dispose()
    streamed = records_of(list(chunks_to_events(chunks)))
    assert streamed == records_of(events)
    instants = {r["created_at"] for _, r in streamed} | {r["updated_at"] for _, r in streamed}
    for created, updated in INSTANTS:
        for text in (created, updated):
            want = dt.datetime.fromisoformat(text.replace(" ", "T") + ":00")
            assert want in instants, text
    dates = [r["date"] for e, r in streamed if e == "attendance"]
    assert dates and all(isinstance(d, str) and dt.date.fromisoformat(d) for d in dates)


@settings(max_examples=200, deadline=None)
@given(any_courses(TRICKY), st.sampled_from([b"", b'{"p":']), st.sampled_from([b"", b"}"]))
def test_record_lines_are_the_records_encoded_one_by_one(
    courses: list[dict[str, object]], prefix: bytes, suffix: bytes
) -> None:
    body, lines = record_lines(courses, prefix, suffix)
    one_by_one = [orjson.dumps(r, option=DIGEST_OPTS) for r in courses]
    assert body == b",".join(one_by_one)
    assert lines == b"".join(prefix + r + suffix + b"\n" for r in one_by_one)


@settings(max_examples=60, deadline=None)
@given(any_courses(TRICKY), st.sampled_from(["jsonl", "tar.gz"]))
def test_split_batches_read_back(courses: list[dict[str, object]], name: str) -> None:
    data = encode(name, events_of({"courses": courses}))
    assert records_of(decode(name, data)) == [("courses", c) for c in courses]
    if name == "jsonl":  # one line per record, whatever the texts hold
        assert len(io.BytesIO(data).readlines()) == len(courses) + 2

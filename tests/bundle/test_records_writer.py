"""The generated row writer (StreamSession's hot path) writes timestamps into each new
message's own field instead of building Timestamp messages and copying them in: the bytes
must be exactly those of the plain way, for any instant (aware in any zone, naive as UTC,
before 1970), any date (or a date already text) and any NULL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ferry.bundle.records import iso_date, row_writer, timestamp
from ferry.datasets.query import Column
from ferry.datasets.spec import Kind
from ferry.v1 import bundle_pb2 as pb

COLUMNS = [
    Column("student_id", Kind.STR, False),
    Column("course_code", Kind.STR, False),
    Column("assessment", Kind.STR, False),
    Column("score", Kind.FLOAT, False),
    Column("graded_on", Kind.DATE, True),
    Column("comment", Kind.STR, True),
    Column("created_at", Kind.TIMESTAMP, False),
    Column("updated_at", Kind.TIMESTAMP, False),
    Column("deleted_at", Kind.TIMESTAMP, True),
]
ZONES = st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=3)),
                         dt.timezone(dt.timedelta(hours=-9, minutes=-30))])  # fmt: skip
INSTANTS = st.builds(
    lambda t, z: t if z is None else t.replace(tzinfo=z),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)),
    ZONES,
)
DATES = st.one_of(st.none(), st.dates(), st.dates().map(dt.date.isoformat))
ROWS = st.tuples(
    st.text(max_size=8), st.text(max_size=8), st.text(max_size=8),
    st.floats(allow_nan=False), DATES, st.one_of(st.none(), st.text(max_size=8)),
    INSTANTS, INSTANTS, st.one_of(st.none(), INSTANTS),
)  # fmt: skip


def plain(rows: list[tuple[Any, ...]]) -> bytes:
    """The same records built the plain way: Timestamp messages passed in."""
    batch = pb.RecordBatch()
    for r in rows:
        batch.grades.add(
            student_id=r[0], course_code=r[1], assessment=r[2], score=r[3],
            graded_on=iso_date(r[4]), comment=r[5], created_at=timestamp(r[6]),
            updated_at=timestamp(r[7]), deleted_at=timestamp(r[8]),
        )  # fmt: skip
    return batch.SerializeToString(deterministic=True)


@given(st.lists(ROWS, max_size=10))
def test_the_writer_writes_exactly_what_the_plain_way_writes(rows: list[tuple[Any, ...]]) -> None:
    batch = pb.RecordBatch()
    assert row_writer(COLUMNS)(batch.grades, rows) == len(rows)
    assert batch.SerializeToString(deterministic=True) == plain(rows)
    for r, rec in zip(rows, batch.grades, strict=True):
        assert rec.HasField("deleted_at") == (r[8] is not None)
        assert rec.graded_on == (iso_date(r[4]) or "")  # no presence: NULL travels as ""


def test_the_epoch_itself_is_written_not_left_unset() -> None:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    batch = pb.RecordBatch()
    row_writer(COLUMNS)(batch.grades, [("s", "c", "a", 1.0, None, None, epoch, epoch, epoch)])
    assert batch.grades[0].HasField("deleted_at")
    assert batch.SerializeToString(deterministic=True) == plain(
        [("s", "c", "a", 1.0, None, None, epoch, epoch, epoch)]
    )

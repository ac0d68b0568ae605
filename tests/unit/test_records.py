import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from ferry.bundle.records import iso_date, row_writer, timestamp
from ferry.datasets.query import Column
from ferry.datasets.spec import Kind
from ferry.v1 import bundle_pb2 as pb


@given(st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1)))
def test_timestamp_matches_protobuf_conversion(value: dt.datetime) -> None:
    ts = timestamp(value)
    assert ts is not None
    assert ts.ToDatetime() == value  # naive values are UTC
    aware = timestamp(value.replace(tzinfo=dt.UTC))
    assert aware == ts


def test_none_stays_unset() -> None:
    assert timestamp(None) is None
    assert iso_date(None) is None
    assert iso_date(dt.date(2026, 9, 1)) == "2026-09-01"


@given(st.text(), st.one_of(st.none(), st.text()), st.floats(allow_nan=False))
def test_row_writer_copies_values_and_leaves_nulls_unset(
    code: str, note: str | None, score: float
) -> None:
    write = row_writer(
        [
            Column("student_id", Kind.STR, False),
            Column("course_code", Kind.STR, False),
            Column("date", Kind.DATE, False),
            Column("category", Kind.STR, False),
            Column("score", Kind.FLOAT, False),
            Column("note", Kind.STR, True),
            Column("created_at", Kind.TIMESTAMP, False),
            Column("deleted_at", Kind.TIMESTAMP, True),
        ]
    )
    batch = pb.RecordBatch()
    when = dt.datetime(2026, 9, 1, 8, 30, tzinfo=dt.UTC)
    n = write(
        batch.daily_performance,
        [(code, "C1", dt.date(2026, 9, 1), "focus", score, note, when, None)],
    )
    assert n == 1
    rec = batch.daily_performance[0]
    assert (rec.student_id, rec.date, rec.score) == (code, "2026-09-01", score)
    assert rec.HasField("note") == (note is not None)
    assert rec.created_at.ToDatetime(dt.UTC) == when
    assert not rec.HasField("deleted_at")

"""decode(encode(x)) == x for every bundle format (hypothesis)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.bundle.formats.base import Batch, Header, Trailer
from ferry.bundle.formats.common import RecordsDigest, schema
from ferry.datasets.spec import Kind
from tests.bundle.helpers import FORMATS, ORDER, decode, encode, events_of, records_of

FIELDS = schema("school")
LEADS = st.sampled_from(["", "=", "+", "-", "@", "\t", "\r", "\0", "'", "'=", "_x0041_", "Ω"])
TEXT = st.builds(lambda lead, rest: lead + rest, LEADS, st.text(max_size=12))
INSTANT = st.datetimes(
    min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
)


def value(kind: Kind, xlsx: bool) -> st.SearchStrategy[Any]:
    if kind is Kind.STR:
        return TEXT
    if kind is Kind.INT:
        return st.integers(-(2**31), 2**31 - 1)
    if kind is Kind.FLOAT:
        # NaN and infinity are not bundle values (JSON has none); Excel's range ends ~1e308.
        floats = st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False)
        # An Excel cell keeps 16 significant digits; the xlsx bundle documents this.
        return floats.map(lambda f: float(f"{f:.16g}")) if xlsx else floats
    if kind is Kind.DATE:
        return st.dates(min_value=dt.date(1, 1, 1)).map(dt.date.isoformat)
    return INSTANT


def record(entity: str, xlsx: bool) -> st.SearchStrategy[dict[str, Any]]:
    cols = FIELDS[entity]
    return st.fixed_dictionaries(
        {
            name: (value(c.kind, xlsx) | st.none()) if c.nullable else value(c.kind, xlsx)
            for name, c in cols.items()
        }
    )


def bundle(xlsx: bool) -> st.SearchStrategy[dict[str, list[dict[str, Any]]]]:
    return st.fixed_dictionaries({e: st.lists(record(e, xlsx), max_size=4) for e in ORDER})


@pytest.mark.parametrize("name", FORMATS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decode_of_encode_gives_back_every_record(name: str, data: st.DataObject) -> None:
    records = data.draw(bundle(name == "xlsx"))
    semester = data.draw(TEXT)
    since = data.draw(st.none() | INSTANT)
    events = events_of(records, semester=semester, since=since)
    got = decode(name, encode(name, events))
    assert records_of(got) == records_of(events)
    head, tail = got[0], got[-1]
    assert isinstance(head, Header) and isinstance(tail, Trailer)
    assert head.metadata == events[0].metadata  # type: ignore[union-attr]
    assert head.updated_since == since
    assert tail.counts == {e: len(r) for e, r in records.items() if r}
    assert all(isinstance(e, Batch) for e in got[1:-1])


@pytest.mark.parametrize("name", FORMATS)
def test_the_records_checksum_is_the_same_in_every_format(name: str) -> None:
    from tests.bundle.helpers import COURSE

    events = events_of({"courses": [COURSE, {**COURSE, "course_code": "C2"}]})
    digest = RecordsDigest()
    digest.update("courses", [COURSE, {**COURSE, "course_code": "C2"}])
    tail = decode(name, encode(name, events))[-1]
    assert isinstance(tail, Trailer) and tail.sha256 == digest.hexdigest()


def test_an_empty_bundle_round_trips_in_every_format() -> None:
    for name in FORMATS:
        got = decode(name, encode(name, events_of({})))
        assert records_of(got) == [] and isinstance(got[-1], Trailer)

"""The line formats' fast path (jsonl, tar.gz members) reads exactly what their own
per-line readers read.

Every test compares `read_raw` (runs of record lines checked in one C call, RawBatches
expanded here) with `read` on the same bytes: the records, or the error, must be the
same. Runs are made tiny so a bundle is cut into many of them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.bundle.formats import runs
from ferry.bundle.formats.base import (
    Batch,
    BundleLimits,
    Event,
    FieldRule,
    FieldRules,
    Header,
    RawBatch,
    RawReading,
    Trailer,
)
from ferry.bundle.formats.decode import Decoder, schema
from ferry.datasets.spec import Kind
from ferry.errors import FerryError
from tests.bundle.helpers import COURSE, any_courses, encode, events_of, fmt, records_of

LINE_FORMATS = ["jsonl", "tar.gz"]
TRICKY = ['a},{"b":1}]', "}}\n", '","record":', 'x"y', "back\\slash", "Ελληνικά 😀", "\u2028"]


@pytest.fixture(autouse=True)
def tiny_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "RUN_BYTES", 300)


def courses(n: int, **changes: Any) -> list[dict[str, Any]]:
    return [
        {**COURSE, "course_code": f"C{i}", "title": TRICKY[i % len(TRICKY)], **changes}
        for i in range(n)
    ]


def expanded(events: Iterable[Event]) -> list[Event]:
    """`events` with each RawBatch decoded as the merge's non-raw path decodes it."""
    dec = Decoder(BundleLimits())
    out: list[Event] = []
    for e in events:
        if isinstance(e, Header):
            dec.fields = schema(e.metadata.dataset)
        out.append(dec.expand(e) if isinstance(e, RawBatch) else e)
    return out


def outcome(read: Callable[[], Iterable[Event]]) -> Any:
    try:
        return records_of(expanded(read()))
    except FerryError as e:
        return (type(e).__name__, e.message)


def raw_events(name: str, data: bytes, rules: FieldRules | None = None) -> list[Event]:
    reader = fmt(name)
    assert isinstance(reader, RawReading)
    return list(reader.read_raw(io.BytesIO(data), BundleLimits(), rules or {}))


def same_both_ways(name: str, data: bytes, rules: FieldRules | None = None) -> Any:
    fast = outcome(lambda: raw_events(name, data, rules))
    assert fast == outcome(lambda: fmt(name).read(io.BytesIO(data), BundleLimits()))
    return fast


@pytest.mark.parametrize("name", LINE_FORMATS)
def test_a_bundle_as_ferry_writes_it_is_read_in_raw_runs(name: str) -> None:
    data = encode(name, events_of({"courses": courses(40)}))
    events = raw_events(name, data)
    assert {type(e).__name__ for e in events} == {"Header", "RawBatch", "Trailer"}
    raws = [e for e in events if isinstance(e, RawBatch)]
    assert sum(e.count for e in raws) == 40 and len(raws) > 3  # cut into runs
    assert len(same_both_ways(name, data)) == 40


@pytest.mark.parametrize("name", LINE_FORMATS)
def test_values_outside_the_rules_come_parsed_and_the_runs_go_on(name: str) -> None:
    rows = courses(40)
    rows[5]["teacher"] = "a much longer name"
    data = encode(name, events_of({"courses": rows}))
    rules = {"courses": {"teacher": FieldRule(Kind.STR, False, max_length=5)}}
    events = raw_events(name, data, rules)
    parsed = [r for e in events if isinstance(e, Batch) for r in e.records]
    assert "a much longer name" in {r["teacher"] for r in parsed}
    assert sum(e.count for e in events if isinstance(e, RawBatch)) + len(parsed) == 40
    assert isinstance(events[-2], RawBatch)  # back on the fast path after the odd run
    assert isinstance(events[-1], Trailer)
    assert len(same_both_ways(name, data, rules)) == 40


@pytest.mark.parametrize("name", LINE_FORMATS)
@pytest.mark.parametrize(
    "change",
    [
        {"created_at": "yesterday"},  # not an instant
        {"credits": 2**40},  # beyond the column
        {"credits": 5.5},  # not an int
        {"title": None},  # a required field null
        {"extra": 1},  # an unknown field
        {"description": "a\0b"},  # NUL: checked record by record, accepted
        {"credits": [1, [2]]},  # nested
    ],
)
def test_a_bad_or_odd_record_deep_in_a_section_reads_the_same_both_ways(
    name: str, change: dict[str, Any]
) -> None:
    rows = courses(30)
    rows[17] = {**rows[17], **change}
    same_both_ways(name, encode(name, events_of({"courses": rows})))


def test_jsonl_truncated_or_broken_anywhere_reads_the_same_both_ways() -> None:
    data = encode("jsonl", events_of({"courses": courses(12)}))
    for cut in range(1, len(data), max(1, len(data) // 60)):
        result = same_both_ways("jsonl", data[:cut])
        assert result[0] in ("InvalidArgument", "DataLoss")
    middle = data.index(b"\n", len(data) // 2)
    for junk in (b"}", b"\n", b"\r", b"\n\n", b" ", b'{"type":"record"}\n'):
        same_both_ways("jsonl", data[:middle] + junk + data[middle:])


def test_jsonl_record_lines_written_another_way_read_the_same() -> None:
    data = encode("jsonl", events_of({"courses": courses(20)}))
    lines = data.split(b"\n")
    head = b'{"type":"record","entity":"courses",'
    rewritten = [
        lines[3].replace(head, b'{"entity":"courses","type":"record",'),
        lines[4].replace(b'"record":{', b'"record": {'),
        lines[5] + b"\r",
        lines[6].replace(b'"entity":"courses"', b'"entity":"cour\\u0073es"'),
    ]  # fmt: skip
    changed = b"\n".join(lines[:3] + rewritten + lines[7:])
    assert len(same_both_ways("jsonl", changed)) == 20


def test_jsonl_an_unknown_entity_or_a_line_too_long_is_named_in_order() -> None:
    data = encode("jsonl", events_of({"courses": courses(20)}))
    unknown = data.replace(b'"entity":"courses","record":{"course_code":"C9"',
                           b'"entity":"nothing","record":{"course_code":"C9"')  # fmt: skip
    assert unknown != data
    assert "unknown entity 'nothing'" in same_both_ways("jsonl", unknown)[1]
    limits = BundleLimits(max_string_chars=10)
    long = data.replace(b'"teacher":"Ms A"', b'"teacher":"' + b"x" * 70_000 + b'"', 1)
    fast = outcome(
        lambda: fmt("jsonl").read_raw(io.BytesIO(long), limits, {})  # type: ignore[no-any-return]
    )
    assert fast == outcome(lambda: fmt("jsonl").read(io.BytesIO(long), limits))
    assert fast[0] == "ResourceExhausted"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(any_courses(TRICKY), st.integers(0, 2000))
def test_any_jsonl_bundle_and_any_one_byte_deleted_read_the_same_both_ways(
    records: list[dict[str, Any]], where: int
) -> None:
    data = encode("jsonl", events_of({"courses": records}))
    assert len(same_both_ways("jsonl", data)) == len(records)
    at = where % len(data)
    same_both_ways("jsonl", data[:at] + data[at + 1 :])

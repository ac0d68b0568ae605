"""The json reader's fast path reads exactly what the precise parser reads.

Every test compares the two on the same bytes: the records (or the error) must be the
same, whatever the scanner accepted or handed over. Runs are made tiny so documents are
cut into many of them, and cut points land inside strings that look like separators.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.bundle.formats import json as json_format
from ferry.bundle.formats import runs
from ferry.bundle.formats.base import Batch, BundleLimits, Event, FieldRule, RawBatch, Trailer
from ferry.bundle.formats.decode import Decoder
from ferry.bundle.formats.json import JsonBundle
from ferry.datasets.spec import Kind
from ferry.errors import FerryError
from tests.bundle.helpers import COURSE, any_courses, encode, events_of, records_of

TRICKY = ['a},{"b":1}]', "}]", "},{", 'x"y', "back\\slash", "Ελληνικά 😀", "\u2028", "\t\n"]


@pytest.fixture(autouse=True)
def tiny_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "RUN_BYTES", 300)


def courses(n: int, **changes: Any) -> list[dict[str, Any]]:
    return [
        {**COURSE, "course_code": f"C{i}", "title": TRICKY[i % len(TRICKY)], **changes}
        for i in range(n)
    ]


def slow(data: bytes) -> list[Event]:
    limits = BundleLimits()
    return list(json_format._parse(io.BytesIO(data), limits, Decoder(limits), False))


def outcome(read: Any) -> Any:
    """The records read, or the error's type and message (its first line: yajl quotes
    the text around a syntax error from its buffer, which the scanner fills differently)."""
    try:
        return records_of(read())
    except FerryError as e:
        return (type(e).__name__, e.message.split("\n")[0])


def same_as_slow(data: bytes) -> Any:
    fast = outcome(lambda: JsonBundle().read(io.BytesIO(data), BundleLimits()))
    assert fast == outcome(lambda: slow(data))
    return fast


def raw_events(data: bytes, rules: Any = None) -> list[Event]:
    return list(JsonBundle().read_raw(io.BytesIO(data), BundleLimits(), rules or {}))


def test_a_compact_bundle_is_read_whole_by_the_fast_path() -> None:
    data = encode("json", events_of({"courses": courses(40)}))
    events = raw_events(data)
    kinds = {type(e).__name__ for e in events}
    assert kinds == {"Header", "RawBatch", "Trailer"}
    assert sum(e.count for e in events if isinstance(e, RawBatch)) == 40
    assert len([e for e in events if isinstance(e, RawBatch)]) > 3  # cut into runs
    assert len(same_as_slow(data)) == 40


def test_raw_records_decode_to_what_the_precise_parser_reads() -> None:
    data = encode("json", events_of({"courses": courses(25)}))
    dec = Decoder(BundleLimits())
    scanned = [
        dec.expand(e) if isinstance(e, RawBatch) else e
        for e in JsonBundle()._read(io.BytesIO(data), BundleLimits(), dec, {})
    ]
    assert records_of(scanned) == records_of(slow(data))


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda d: orjson.dumps(orjson.loads(d), option=orjson.OPT_INDENT_2),  # whitespace
        lambda d: orjson.dumps(  # the keys of records in another order
            {
                k: [dict(reversed(r.items())) for r in v] if k == "courses" else v
                for k, v in orjson.loads(d).items()
            }
        ),
        lambda d: d.replace(b'"credits":5', b'"credits":5.0'),  # an int written as float
        lambda d: d.replace(b'08:00:00Z"', b'08:00:00+00:00"'),  # another zone spelling
    ],
)
def test_other_spellings_of_a_valid_bundle_read_the_same(rewrite: Any) -> None:
    data = rewrite(encode("json", events_of({"courses": courses(30)})))
    assert len(same_as_slow(data)) == 30


def test_a_field_left_out_is_absent_not_null() -> None:
    """A record without `deleted_at` does not carry it (a merge then leaves it as it is):
    it reads without the key, on both paths, and a null left out changes the checksum."""
    partial = [{k: v for k, v in r.items() if k != "deleted_at"} for r in courses(30)]
    data = encode("json", events_of({"courses": partial}))
    read = same_as_slow(data)
    assert len(read) == 30 and all("deleted_at" not in r for r in read)
    full = encode("json", events_of({"courses": courses(30)}))
    assert same_as_slow(full.replace(b'"deleted_at":null,', b""))[0] == "DataLoss"


def test_a_bad_value_deep_in_a_section_is_named_as_the_precise_parser_names_it() -> None:
    rows = courses(30)
    data = encode("json", events_of({"courses": rows}))
    bad = data.replace(b'"course_code":"C17","created_at":"2026-09-01T08:00:00Z"',
                       b'"course_code":"C17","created_at":"yesterday"')  # fmt: skip
    assert bad != data
    result = same_as_slow(bad)
    assert result[0] == "InvalidArgument" and "courses record 17" in result[1]


def test_truncated_or_broken_anywhere_fails_as_the_precise_parser_fails() -> None:
    data = encode("json", events_of({"courses": courses(12)}))
    for cut in range(1, len(data), max(1, len(data) // 40)):
        result = same_as_slow(data[:cut])
        assert result[0] in ("InvalidArgument", "DataLoss")
    for junk in (b"}", b"]", b",", b'"', b"x"):
        middle = len(data) // 2
        same_as_slow(data[:middle] + junk + data[middle:])


def test_a_changed_record_fails_the_checksum_on_the_fast_path_too() -> None:
    data = encode("json", events_of({"courses": courses(12)}))
    changed = data.replace(b'"credits":5', b'"credits":6', 1)
    result = same_as_slow(changed)
    assert result[0] == "DataLoss"


def test_values_outside_the_rules_come_parsed_and_the_scan_goes_on() -> None:
    rows = courses(40)
    rows[5]["teacher"] = "a much longer name"
    data = encode("json", events_of({"courses": rows}))
    rules = {"courses": {"teacher": FieldRule(Kind.STR, False, max_length=5)}}
    events = raw_events(data, rules)
    parsed = [r for e in events if isinstance(e, Batch) for r in e.records]
    assert "a much longer name" in {r["teacher"] for r in parsed}
    assert sum(e.count for e in events if isinstance(e, RawBatch)) + len(parsed) == 40
    assert isinstance(events[-2], RawBatch)  # back on the fast path after the odd run
    assert isinstance(events[-1], Trailer)


def test_nul_characters_are_checked_record_by_record() -> None:
    rows = courses(40)
    rows[2]["description"] = "a\0b"
    data = encode("json", events_of({"courses": rows}))
    events = raw_events(data)
    parsed = [r for e in events if isinstance(e, Batch) for r in e.records]
    assert "a\0b" in {r["description"] for r in parsed}
    assert len(same_as_slow(data)) == 40


def test_nested_values_go_to_the_precise_parser() -> None:
    data = encode("json", events_of({"courses": courses(40)}))
    deep = "[" * 50 + "]" * 50
    bad = data.replace(b'"credits":5', f'"credits":{deep}'.encode(), 1)
    result = same_as_slow(bad)
    assert result[0] == "InvalidArgument" and "nested deeper than 32" in result[1]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(any_courses(TRICKY), st.integers(0, 400))
def test_any_bundle_and_any_one_byte_change_read_the_same_both_ways(
    records: list[dict[str, Any]], where: int
) -> None:
    data = encode("json", events_of({"courses": records}))
    assert len(same_as_slow(data)) == len(records)
    at = where % len(data)
    same_as_slow(data[:at] + data[at + 1 :])

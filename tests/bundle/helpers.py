"""Building and reading bundles in tests."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st

from ferry import plugins
from ferry.bundle.formats.base import Batch, BundleLimits, Event, Header, Record, Trailer
from ferry.bundle.scan import FORMAT_VERSION
from ferry.v1 import bundle_pb2 as pb

FORMATS = ["json", "jsonl", "xlsx", "tar.gz"]
ORDER = ["courses", "students", "enrollments", "highlights", "grades", "attendance",
         "daily_performance"]  # fmt: skip


def fmt(name: str) -> Any:
    return plugins.load("ferry.bundle_formats", name)()


def header(
    counts: dict[str, int], semester: str = "2026-fall", since: dt.datetime | None = None
) -> Header:
    meta = pb.BundleMetadata(
        semester=semester,
        exported_by="tester",
        format_version=FORMAT_VERSION,
        dataset="school",
        include_deleted=since is not None,
        entity_order=ORDER,
    )
    meta.exported_at.FromDatetime(dt.datetime(2026, 9, 1, 8, 30, tzinfo=dt.UTC))
    meta.counts.update(counts)
    if since is not None:  # a delta bundle says so in its metadata too
        meta.updated_since.FromDatetime(since)
    return Header(meta, since)


def events_of(records: dict[str, list[Record]], **kw: Any) -> list[Event]:
    """A bundle holding `records` (entity -> records), batches of at most 3 records."""
    counts = {e: len(records.get(e, [])) for e in ORDER}
    out: list[Event] = [header(counts, **kw)]
    for entity in ORDER:
        rows = records.get(entity, [])
        out += [Batch(entity, rows[i : i + 3]) for i in range(0, len(rows), 3)]
    out.append(Trailer(counts))
    return out


def encode(name: str, events: Iterable[Event]) -> bytes:
    buf = io.BytesIO()
    fmt(name).write(iter(events), buf)
    return buf.getvalue()


def decode(name: str, data: bytes, limits: BundleLimits | None = None) -> list[Event]:
    return list(fmt(name).read(io.BytesIO(data), limits or BundleLimits()))


def records_of(events: Iterable[Event]) -> list[tuple[str, Record]]:
    return [(e.entity, r) for e in events if isinstance(e, Batch) for r in e.records]


COURSE: Record = {
    "course_code": "C1",
    "semester": "2026-fall",
    "title": "Ελληνικά",
    "description": "=1+2",
    "credits": 5,
    "teacher": "Ms A",
    "status": "active",
    "prerequisite_code": None,
    "created_at": dt.datetime(2026, 9, 1, 8, 0, tzinfo=dt.UTC),
    "updated_at": dt.datetime(2026, 9, 2, 8, 0, 0, 123456, tzinfo=dt.UTC),
    "deleted_at": None,
}


def any_courses(tricky: list[str]) -> st.SearchStrategy[list[Record]]:
    """Up to 12 valid courses (numbered C0, C1, ...) with any text, credits and instants;
    `tricky` adds texts that look like the format's own separators."""
    text = st.text(max_size=8) | st.sampled_from(tricky)
    changes = st.fixed_dictionaries(
        {
            "title": text,
            "description": text,
            "credits": st.integers(-(2**31), 2**31 - 1),
            "created_at": st.datetimes(
                min_value=dt.datetime(1900, 1, 1), timezones=st.just(dt.UTC)
            ),
        }
    )
    return st.lists(changes, max_size=12).map(
        lambda rows: [{**COURSE, **r, "course_code": f"C{i}"} for i, r in enumerate(rows)]
    )

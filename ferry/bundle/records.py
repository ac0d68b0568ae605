"""Database rows -> typed bundle records, driven by the dataset spec.

Conversion is the hot path of every export, so each entity gets a small function
generated once from its columns (no per-row dict, no per-field dispatch).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from ferry.datasets.query import Column
from ferry.datasets.spec import Kind

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
EPOCH_NAIVE = dt.datetime(1970, 1, 1)

# Appends rows to a repeated message field (e.g. RecordBatch.grades) and returns the count.
RowWriter = Callable[[Any, Sequence[Sequence[Any]]], int]


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    """A Timestamp for `value`; naive datetimes (SQLite) are taken as UTC."""
    if value is None:
        return None
    delta = value - (EPOCH if value.tzinfo else EPOCH_NAIVE)
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def iso_date(value: dt.date | str | None) -> str | None:
    """YYYY-MM-DD for a date (a string passes through)."""
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


def row_writer(
    columns: Sequence[Column], micros: bool = False, epoch: int = 0, text_dates: bool = False
) -> RowWriter:
    """A function `write(repeated_field, rows)` adding one message per row.

    `micros`: instants come as whole microseconds since `epoch` (seconds since 1970: 0,
    or PostgreSQL's 2000-01-01 when a scan reads its binary form, ferry.bundle.scan),
    split here with floor division, the same seconds and nanos a datetime gives (before
    the epoch too). `text_dates`: dates come as YYYY-MM-DD text or None (a PostgreSQL
    scan's), passed on as they are.

    Timestamps are written into the new message's own field (seconds, nanos) rather than
    built as Timestamp messages and copied in: a Timestamp built and copied cost about 3 us
    (py-spy: `timestamp` was 18% of a StreamSession's server time), the two assignments a
    third of that. What is written is the same (tests/bundle/test_records_writer.py).
    """
    args = []
    stamps = []
    for i, col in enumerate(columns):
        if col.kind is Kind.TIMESTAMP and micros:
            stamps.append(
                f"        v = r[{i}]\n"
                "        if v is not None:\n"
                f"            t = m.{col.name}\n"
                f"            t.seconds = v // 1000000{f' + {int(epoch)}' if epoch else ''}\n"
                "            t.nanos = v % 1000000 * 1000\n"
            )
        elif col.kind is Kind.TIMESTAMP:
            stamps.append(
                f"        v = r[{i}]\n"
                "        if v is not None:\n"
                "            d = v - (_E if v.tzinfo is not None else _EN)\n"
                f"            t = m.{col.name}\n"
                "            t.seconds = d.days * 86400 + d.seconds\n"
                "            t.nanos = d.microseconds * 1000\n"
            )
        elif col.kind is Kind.DATE and text_dates:
            args.append(f"{col.name}=r[{i}]")
        elif col.kind is Kind.DATE:
            args.append(
                f"{col.name}=(None if (x := r[{i}]) is None else x if x.__class__ is str "
                "else x.isoformat())"
            )
        else:
            args.append(f"{col.name}=r[{i}]")
    source = (
        "def write(target, rows):\n"
        "    add = target.add\n"
        "    for r in rows:\n"
        f"        m = add({', '.join(args)})\n" + "".join(stamps) + "    return len(rows)\n"
    )
    namespace: dict[str, Any] = {"_E": EPOCH, "_EN": EPOCH_NAIVE}
    exec(compile(source, f"<row_writer {','.join(c.name for c in columns)}>", "exec"), namespace)
    writer: RowWriter = namespace["write"]
    return writer

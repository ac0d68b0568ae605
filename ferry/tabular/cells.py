"""Helpers every writer shares: batching rows and turning timestamps into UTC."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from ferry.tabular.base import PROGRESS_EVERY


def batches(rows: Iterable[Sequence[Any]], size: int = PROGRESS_EVERY) -> Iterator[list[Any]]:
    """`rows` in lists of up to `size`, so writers work (and report progress) per batch."""
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def utc(value: dt.datetime) -> dt.datetime:
    """`value` in UTC; a naive datetime (SQLite) is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def utc_iso(value: dt.datetime | None) -> str | None:
    """ISO-8601 in UTC with a `Z`, e.g. 2026-09-01T08:30:00Z."""
    if value is None:
        return None
    return utc(value).isoformat().replace("+00:00", "Z")


def utc_naive(value: dt.datetime) -> dt.datetime:
    """`value` as a naive UTC datetime, for formats (Excel) that have no time zones."""
    return utc(value).replace(tzinfo=None)


def to_millisecond(value: dt.datetime) -> dt.datetime:
    """`value` rounded (half up) to the millisecond: all that an Excel datetime keeps.
    Written so, an instant reads back from the file as exactly this value."""
    ms = (value.microsecond + 500) // 1000
    return value.replace(microsecond=0) + dt.timedelta(milliseconds=ms)

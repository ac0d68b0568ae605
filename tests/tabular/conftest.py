"""Shared tables and rows for the format tests."""

from __future__ import annotations

import datetime as dt

import pytest

from ferry.datasets.spec import Kind
from ferry.tabular.base import Table, TableColumn

COLUMNS = [
    TableColumn("student_id", "Student ID"),
    TableColumn("last_name", "Last name"),
    TableColumn("year_level", "Year level", Kind.INT),
    TableColumn("score", "Score", Kind.FLOAT),
    TableColumn("date_of_birth", "Date of birth", Kind.DATE),
    TableColumn("updated_at", "Updated", Kind.TIMESTAMP),
]


@pytest.fixture
def table() -> Table:
    return Table(
        "Students",
        COLUMNS,
        filters={"status": "active"},
        generated_at=dt.datetime(2026, 9, 1, 8, 30, tzinfo=dt.UTC),
    )


def student_rows(n: int) -> list[tuple[object, ...]]:
    athens = dt.timezone(dt.timedelta(hours=3))
    return [
        (
            f"S{i:06d}",
            "Παπαδοπούλου" if i % 2 else '=HYPERLINK("x")',
            i % 12 + 1,
            -0.5 * i,
            dt.date(2008, 1, 1) + dt.timedelta(days=i % 365),
            dt.datetime(2026, 9, 1, 11, 30, tzinfo=athens),
        )
        for i in range(n)
    ]

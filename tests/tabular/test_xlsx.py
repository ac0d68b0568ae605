from __future__ import annotations

import datetime as dt
import io
import math

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry import plugins
from ferry.datasets.spec import Kind
from ferry.errors import InvalidArgument
from ferry.tabular.base import ReadLimits, Table, TableColumn
from ferry.tabular.xlsx import XlsxFormat
from tests.tabular.conftest import student_rows


def write(table: Table, rows: list[tuple[object, ...]], fmt: XlsxFormat | None = None) -> bytes:
    out = io.BytesIO()
    (fmt or XlsxFormat()).write(out, table, rows)
    return out.getvalue()


def test_xlsx_is_loaded_by_name_from_the_plugin_registry() -> None:
    assert plugins.load("ferry.formats", "xlsx") is XlsxFormat


def test_xlsx_cells_keep_their_types_and_the_header_is_bold_and_frozen(table: Table) -> None:
    wb = openpyxl.load_workbook(io.BytesIO(write(table, student_rows(3))))
    ws = wb.active
    assert ws is not None
    assert [c.value for c in ws[1]] == [c.name for c in table.columns]
    assert all(c.font.b for c in ws[1])
    assert ws.freeze_panes == "A2"
    sid, name, year, score, dob, updated = (c.value for c in ws[3])
    assert (sid, name) == ("S000001", "Παπαδοπούλου")
    assert type(year) is int and year == 2
    assert score == -0.5
    assert dob == dt.datetime(2008, 1, 2) and ws[3][4].is_date
    assert updated == dt.datetime(2026, 9, 1, 8, 30)  # UTC, naive: Excel has no zones
    assert ws["B2"].value == '\'=HYPERLINK("x")'
    assert ws.column_dimensions["B"].width >= len("Παπαδοπούλου")
    assert "UTC" in str(ws["F1"].comment.text)
    assert wb.properties.title == "Students"


def test_xlsx_continues_on_a_new_sheet_past_the_row_limit(table: Table) -> None:
    data = write(table, student_rows(7), XlsxFormat(max_sheet_rows=3))
    wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    assert wb.sheetnames == ["Students", "Students (2)", "Students (3)"]
    back = list(XlsxFormat().read(io.BytesIO(data), ReadLimits()))
    assert [r["student_id"] for r in back] == [f"S{i:06d}" for i in range(7)]


def test_xlsx_refuses_text_longer_than_excel_allows_naming_row_and_column() -> None:
    t = Table("T", [TableColumn("note", "Note")])
    with pytest.raises(InvalidArgument, match="row 2, column 'note'"):
        write(t, [("ok",), ("x" * 40_000,)])


def test_xlsx_writer_reports_progress_and_returns_the_row_count(table: Table) -> None:
    seen: list[int] = []
    assert XlsxFormat().write(io.BytesIO(), table, student_rows(6_000), seen.append) == 6_000
    assert seen == [5_000, 6_000]


def test_xlsx_reader_reads_typed_cells_back_as_text(table: Table) -> None:
    (row,) = XlsxFormat().read(io.BytesIO(write(table, student_rows(1))), ReadLimits())
    assert row == {
        "student_id": "S000000",
        "last_name": '=HYPERLINK("x")',
        "year_level": "1",
        "score": "0",
        "date_of_birth": "2008-01-01",
        "updated_at": "2026-09-01T08:30:00",
    }


def test_xlsx_reader_refuses_a_file_that_is_not_xlsx() -> None:
    with pytest.raises(InvalidArgument, match="not an XLSX file"):
        list(XlsxFormat().read(io.BytesIO(b"id,name\n1,x\n"), ReadLimits()))


texts = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
ROUND_TRIP = Table(
    "T",
    [
        TableColumn("text", "Text"),
        TableColumn("n", "N", Kind.INT),
        TableColumn("x", "X", Kind.FLOAT),
        TableColumn("d", "D", Kind.DATE),
    ],
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.none(), texts, st.sampled_from(["=1+1", "+3", "-2", "@SUM(A1)", "'=x", "Ελένη"])
            ),
            st.one_of(st.none(), st.integers(-(2**53), 2**53)),
            st.one_of(st.none(), st.floats(-1e300, 1e300)),
            st.one_of(st.none(), st.dates(dt.date(1900, 3, 1), dt.date(9999, 12, 31))),
        ),
        max_size=8,
    )
)
def test_xlsx_writer_then_reader_round_trips_any_rows(
    rows: list[tuple[str | None, int | None, float | None, dt.date | None]],
) -> None:
    back = list(XlsxFormat().read(io.BytesIO(write(ROUND_TRIP, rows)), ReadLimits()))  # type: ignore[arg-type]
    expected = [r for r in rows if any(v not in (None, "") for v in r)]  # blank rows vanish
    assert len(back) == len(expected)
    for got, (t, n, x, d) in zip(back, expected, strict=True):
        assert got["text"] == (t or None)
        assert got["n"] == (None if n is None else str(n))
        # XlsxWriter keeps 16 significant digits (Excel shows 15; its range ends near
        # 1e308), so floats come back close, not bit-equal.
        assert (got["x"] is None) == (x is None)
        if x is not None and got["x"] is not None:
            assert math.isclose(float(got["x"]), x, rel_tol=1e-15, abs_tol=1e-300)
        assert got["d"] == (None if d is None else d.isoformat())

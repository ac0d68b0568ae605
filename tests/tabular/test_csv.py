from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry import plugins
from ferry.datasets.spec import Kind
from ferry.errors import InvalidArgument, ResourceExhausted
from ferry.tabular.base import ReadLimits, Table, TableColumn
from ferry.tabular.csv import CsvFormat
from tests.tabular.conftest import student_rows


def write(table: Table, rows: list[tuple[object, ...]], **kw: object) -> bytes:
    out = io.BytesIO()
    CsvFormat(**kw).write(out, table, rows)  # type: ignore[arg-type]
    return out.getvalue()


def test_csv_is_loaded_by_name_from_the_plugin_registry() -> None:
    assert plugins.load("ferry.formats", "csv") is CsvFormat


def test_csv_has_a_header_of_names_and_typed_values_as_iso_text(table: Table) -> None:
    data = write(table, student_rows(2), bom=False)
    assert not data.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert lines[0] == [c.name for c in table.columns]
    assert lines[1] == [
        "S000000",
        '\'=HYPERLINK("x")',
        "1",
        "-0.0",
        "2008-01-01",
        "2026-09-01T08:30:00Z",
    ]
    assert lines[2][1] == "Παπαδοπούλου"
    assert lines[2][3] == "-0.5"  # a negative number is not neutralised
    assert data.endswith(b"\r\n")


def test_csv_carries_a_bom_by_default_and_not_when_turned_off(table: Table) -> None:
    """Excel on Windows garbles Greek in UTF-8 without a byte-order mark."""
    assert write(table, []).startswith(b"\xef\xbb\xbf")
    assert plugins.parse_settings("ferry.formats", "csv", None).bom is True
    assert not write(table, [], bom=False).startswith(b"\xef\xbb\xbf")


def test_csv_writer_returns_rows_written_and_reports_progress(table: Table) -> None:
    seen: list[int] = []
    n = CsvFormat().write(io.BytesIO(), table, student_rows(12_000), seen.append)
    assert n == 12_000
    assert seen == [5_000, 10_000, 12_000]


def test_csv_reader_undoes_neutralisation_and_strips_a_bom(table: Table) -> None:
    data = write(table, student_rows(1), bom=True)
    (row,) = CsvFormat().read(io.BytesIO(data), ReadLimits())
    assert row["last_name"] == '=HYPERLINK("x")'
    assert list(row) == [c.name for c in table.columns]


def test_csv_reader_names_the_row_and_column_of_bytes_that_are_not_utf8() -> None:
    data = b"id,name\r\n1,ok\r\n2," + "Ελένη".encode("iso-8859-7") + b"\r\n"
    with pytest.raises(InvalidArgument, match=r"row 3, column 'name': not valid UTF-8"):
        list(CsvFormat().read(io.BytesIO(data), ReadLimits()))


def test_csv_reader_refuses_a_row_with_the_wrong_number_of_cells() -> None:
    with pytest.raises(InvalidArgument, match="row 3: has 3 cells, the header has 2"):
        list(CsvFormat().read(io.BytesIO(b"a,b\n1,2\n1,2,3\n"), ReadLimits()))


def test_csv_reader_refuses_duplicate_headers() -> None:
    with pytest.raises(InvalidArgument, match="duplicate column 'A'"):
        list(CsvFormat().read(io.BytesIO(b"a,A\n1,2\n"), ReadLimits()))


def test_csv_reader_stops_at_the_row_and_byte_limits() -> None:
    data = b"a\n" + b"x\n" * 10
    with pytest.raises(ResourceExhausted, match="more than 5 rows"):
        list(CsvFormat().read(io.BytesIO(data), ReadLimits(max_rows=5)))
    with pytest.raises(ResourceExhausted, match="larger than the 8-byte limit"):
        list(CsvFormat().read(io.BytesIO(data), ReadLimits(max_bytes=8)))


def test_csv_reader_accepts_semicolons_as_excel_writes_them_in_greek_locales() -> None:
    rows = list(CsvFormat().read(io.BytesIO("βαθμός;τάξη\n1,5;2\n".encode()), ReadLimits()))
    assert rows == [{"βαθμός": "1,5", "τάξη": "2"}]


def test_csv_reader_of_an_empty_file_yields_nothing() -> None:
    assert list(CsvFormat().read(io.BytesIO(b""), ReadLimits())) == []


cells = st.text(alphabet=st.characters(blacklist_categories=["Cs"]))
ROUND_TRIP = Table(
    "T",
    [
        TableColumn("text", "Text"),
        TableColumn("n", "N", Kind.INT),
        TableColumn("d", "D", Kind.DATE),
    ],
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.none(), cells, st.sampled_from(["=1+1", "+3", "-2", "@SUM(A1)", "'=x", "Ελένη"])
            ),
            st.one_of(st.none(), st.integers(-(2**63), 2**63)),
            st.one_of(st.none(), st.dates()),
        )
    )
)
def test_csv_writer_then_reader_round_trips_any_rows(
    rows: list[tuple[str | None, int | None, dt.date | None]],
) -> None:
    data = write(ROUND_TRIP, rows)  # type: ignore[arg-type]
    back = list(CsvFormat().read(io.BytesIO(data), ReadLimits()))
    expected = [
        {
            "text": t or None,
            "n": None if n is None else str(n),
            "d": None if d is None else d.isoformat(),
        }
        for t, n, d in rows
    ]
    assert back == expected

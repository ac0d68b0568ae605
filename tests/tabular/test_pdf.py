from __future__ import annotations

import io
import re

import pypdf
import pytest

from ferry import plugins
from ferry.datasets.spec import Kind
from ferry.errors import InvalidArgument
from ferry.tabular.base import Table, TableColumn
from ferry.tabular.pdf import PdfFormat
from tests.tabular.conftest import student_rows


def render(table: Table, rows: list[tuple[object, ...]]) -> pypdf.PdfReader:
    out = io.BytesIO()
    assert PdfFormat().write(out, table, rows) == len(rows)
    out.seek(0)
    return pypdf.PdfReader(out)


def text(page: pypdf.PageObject) -> str:
    return re.sub(r"\s+", " ", page.extract_text())


def test_pdf_is_loaded_by_name_from_the_plugin_registry() -> None:
    assert plugins.load("ferry.formats", "pdf") is PdfFormat


def test_every_pdf_page_has_title_filters_header_and_page_n_of_m(table: Table) -> None:
    pdf = render(table, student_rows(150))
    pages = len(pdf.pages)
    assert pages >= 3
    for n, page in enumerate(pdf.pages, start=1):
        t = text(page)
        assert "Students" in t
        assert "Filters: status: active" in t
        assert "Generated 2026-09-01 08:30 UTC" in t
        assert "Student ID" in t and "Date of birth" in t  # header row repeated
        assert f"Page {n} of {pages}" in t


def test_pdf_renders_greek_text(table: Table) -> None:
    assert "Παπαδοπούλου" in text(render(table, student_rows(2)).pages[0])


def test_pdf_of_an_empty_table_is_one_page_with_the_header(table: Table) -> None:
    pdf = render(table, [])
    assert len(pdf.pages) == 1
    assert "Page 1 of 1" in text(pdf.pages[0])


def test_pdf_turns_landscape_when_the_table_is_wide() -> None:
    narrow = Table("N", [TableColumn("a", "A"), TableColumn("b", "B", Kind.INT)])
    wide = Table("W", [TableColumn(f"c{i}", f"Column {i}") for i in range(12)])
    portrait = render(narrow, [("x", 1)]).pages[0].mediabox
    # Widths come from the content: twelve columns of 20 characters need landscape.
    landscape = render(wide, [tuple("x" * 20 for _ in range(12))]).pages[0].mediabox
    assert portrait.height > portrait.width
    assert landscape.width > landscape.height


def test_pdf_cuts_long_cells_to_their_column() -> None:
    t = Table("T", [TableColumn("a", "A"), TableColumn("b", "B")])
    page_text = text(render(t, [("y" * 500, "next")]).pages[0])
    assert "…" in page_text and "y" * 500 not in page_text


def test_pdf_past_its_row_cap_is_refused_up_front_when_the_count_is_known(table: Table) -> None:
    big = Table(table.title, table.columns, expected_rows=11)
    with pytest.raises(InvalidArgument, match="at most 10 rows and this one has 11; use csv"):
        PdfFormat(max_rows=10).write(io.BytesIO(), big, student_rows(11))


def test_pdf_past_its_row_cap_is_refused_while_streaming(table: Table) -> None:
    with pytest.raises(InvalidArgument, match="at most 10 rows") as e:
        PdfFormat(max_rows=10).write(io.BytesIO(), table, student_rows(200))
    assert e.value.field == "limit"

"""PDF exports stream: each finished page leaves memory (spooled to a temporary file) and
the file is written object by object, so memory does not grow with the rows; the row cap
is a setting (plugins.formats.pdf.max_rows) with a high default, not a memory guard."""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pypdf
import pytest

from ferry.app import App
from ferry.export_jobs.runner import tabular_format
from ferry.tabular.base import Table
from ferry.tabular.pdf import MAX_ROWS, PdfFormat, PdfSettings
from tests.tabular.conftest import student_rows


def _peak(table: Table, rows: int, path: Path) -> float:
    """Peak Python memory (MB) while writing `rows` rows to a file."""
    data = student_rows(rows)
    tracemalloc.start()
    try:
        with path.open("wb") as f:
            assert PdfFormat().write(f, table, iter(data)) == rows
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_pages(table: Table, tmp_path: Path) -> None:
    """Ten times the rows (about 30 pages against 300) cost under a megabyte more; when
    reportlab held every page until save it was about 14 KB a page (over 4 MB here)."""
    _peak(table, 100, tmp_path / "warm.pdf")  # fonts load once per process: not per page
    small = _peak(table, 1_500, tmp_path / "small.pdf")
    big = _peak(table, 15_000, tmp_path / "big.pdf")
    assert big - small < 1.0, f"{small:.1f} MB at 1,500 rows, {big:.1f} MB at 15,000"


def test_a_streamed_pdf_is_whole_with_page_n_of_m(table: Table, tmp_path: Path) -> None:
    path = tmp_path / "students.pdf"
    rows = student_rows(2_000)
    with path.open("wb") as f:
        assert PdfFormat().write(f, table, iter(rows)) == 2_000
    pdf = pypdf.PdfReader(path, strict=True)
    pages = len(pdf.pages)
    assert pages > 20
    texts = [re.sub(r"\s+", " ", p.extract_text()) for p in pdf.pages]
    for n, t in enumerate(texts, start=1):
        assert f"Page {n} of {pages}" in t
        assert "Student ID" in t
    whole = " ".join(texts)
    assert all(f"S{i:06d}" in whole for i in (0, 1, 999, 1_999))
    assert "Παπαδοπούλου" in whole
    assert whole.count("S0") == 2_000  # every row once, none lost or doubled


def test_the_row_cap_is_a_setting_with_a_high_default(
    seeded_url: str, make_app: Callable[..., App]
) -> None:
    assert MAX_ROWS >= 1_000_000 and PdfSettings().max_rows == MAX_ROWS
    assert tabular_format("pdf", make_app(seeded_url)).max_rows == MAX_ROWS
    app = make_app(seeded_url, FERRY_PLUGINS_FORMATS_PDF_MAX_ROWS="25")
    fmt = tabular_format("pdf", app)
    assert isinstance(fmt, PdfFormat) and fmt.max_rows == 25
    with pytest.raises(ValueError):
        PdfSettings(max_rows=0)

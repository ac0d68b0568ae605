"""The grades PDF as people see it: read back with a PDF text extractor (pypdf) and
rendered to PNG (pypdfium2) in test-artifacts/. Dates and scores appear whole, numbers are
right-aligned, bookkeeping columns only when asked for, and no empty zebra rows."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pypdf
import pypdfium2
import pytest

from ferry.datasets.school import SCHOOL
from ferry.datasets.spec import Kind
from ferry.db.engine import make_engine
from ferry.export_jobs.query import ExportRequest, plan_export, row_fixer
from ferry.tabular.base import Table, TableColumn
from ferry.tabular.pdf import _ZEBRA, PdfFormat

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "pdf"


def _export(url: str, fields: tuple[str, ...] = (), limit: int = 0) -> tuple[bytes, list[Any]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            req = ExportRequest(
                "grades",
                fields=fields,
                limit=limit,
                omit_unless_asked=PdfFormat.omit_unless_asked,
            )
            plan = plan_export(conn, SCHOOL, req, 1_000_000)
            rows = [tuple(r) for r in conn.execute(plan.rows)]
        fix = row_fixer(plan.columns, engine.dialect.name)
        if fix is not None:
            rows = [tuple(r) for r in fix(rows)]
        out = io.BytesIO()
        PdfFormat().write(out, plan.table({}, len(rows)), rows)
        return out.getvalue(), [plan.columns, rows]
    finally:
        engine.dispose()


def _save(data: bytes, name: str, pages: int = 2) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    doc = pypdfium2.PdfDocument(data)
    for i in range(min(pages, len(doc))):
        doc[i].render(scale=1.5).to_pil().save(ARTIFACTS / f"{name}-p{i + 1}.png")
    doc.close()


def test_grades_pdf_shows_every_date_and_score_whole(seeded_url: str) -> None:
    data, (columns, rows) = _export(seeded_url)
    names = [c.name for c in columns]
    assert not {"created_at", "updated_at", "deleted_at"} & set(names)
    reader = pypdf.PdfReader(io.BytesIO(data))
    first = reader.pages[0].extract_text()
    lines = first.splitlines()
    header = " ".join(lines[:6])
    # Labels stay apart: no "Max scoreWeight" or "Graded onComment".
    assert "Max scoreWeight" not in header.replace("\n", "")
    assert "Graded onComment" not in first.replace("\n", "")
    on_page = [r for r in rows if r[names.index("student_id")] in first][:20]
    assert on_page
    for r in on_page:
        graded = r[names.index("graded_on")]
        if graded is not None:
            assert str(graded) in first  # "2025-09-14", never "2025-09-..."
        assert f"{r[names.index('score')]:g}" in first
        assert f"{r[names.index('max_score')]:g}" in first
    _save(data, f"grades-{seeded_url.split(':')[0]}")


def test_bookkeeping_columns_when_asked(seeded_url: str) -> None:
    data, (columns, _) = _export(seeded_url, fields=("student_id", "score", "updated_at"), limit=5)
    assert [c.name for c in columns] == ["student_id", "score", "updated_at"]
    assert "Updated" in pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text()


def _positions(page: pypdf.PageObject) -> list[tuple[str, float, float]]:
    found: list[tuple[str, float, float]] = []

    def visit(text: str, cm: Any, tm: Any, font: Any, size: Any) -> None:
        if text.strip():
            found.append((text.strip(), float(tm[4]), float(tm[5])))

    page.extract_text(visitor_text=visit)
    return found


def test_numbers_right_aligned_and_no_empty_zebra_rows() -> None:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    from ferry.tabular.pdf_fonts import font_pair

    t = Table("T", [TableColumn("name", "Name"), TableColumn("n", "Score", Kind.FLOAT)])
    rows = [("a", 1.5), ("b", 1234.25), ("c", 7.0)]
    out = io.BytesIO()
    PdfFormat().write(out, t, rows)
    data = out.getvalue()
    page = pypdf.PdfReader(io.BytesIO(data)).pages[0]
    font = font_pair()[0]
    rights = [
        x + stringWidth(s, font, 8) for s, x, _ in _positions(page) if s in ("1.5", "1234.25", "7")
    ]
    assert len(rights) == 3 and max(rights) - min(rights) < 0.5
    # Three rows: one zebra band (row 2). Below the last row nothing is shaded.
    img = pypdfium2.PdfDocument(data)[0].render(scale=1).to_pil().convert("RGB")
    zebra = tuple(round(v * 255) for v in (_ZEBRA.red, _ZEBRA.green, _ZEBRA.blue))
    w, h = img.size
    shaded = [y for y in range(h) if img.getpixel((w // 2, y)) == zebra]
    assert shaded, "one zebra band"
    assert max(shaded) - min(shaded) < 14  # a single row's band, no empty rows after
    _save(data, "zebra", 1)


@pytest.mark.parametrize("n", [1, 2, 7])
def test_zebra_bands_match_the_rows(n: int) -> None:
    t = Table("T", [TableColumn("name", "Name")])
    out = io.BytesIO()
    PdfFormat().write(out, t, [(f"row {i}",) for i in range(n)])
    img = pypdfium2.PdfDocument(out.getvalue())[0].render(scale=1).to_pil().convert("RGB")
    zebra = tuple(round(v * 255) for v in (_ZEBRA.red, _ZEBRA.green, _ZEBRA.blue))
    w, h = img.size
    bands, inside = 0, False
    for y in range(h):
        z = img.getpixel((w // 2, y)) == zebra
        bands += z and not inside
        inside = z
    assert bands == n // 2

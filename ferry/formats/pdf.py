"""PDF: a paged table drawn straight on a reportlab canvas, one page at a time.

No platypus story is built (that would hold every row); each page is drawn from the rows
it holds and then left behind. Every page carries the title, the filters and generation
time, the header row, zebra rows and "Page n of m". The total m is not known while
streaming, so each footer draws the number from one form XObject that is filled in after
the last page: exact even when `expected_rows` is unknown or wrong, at constant cost.
Pages are landscape when the columns need it. Header cells show column labels: a PDF is
for people, not for re-import. Cells too long for their column are cut with an ellipsis.

Memory: reportlab keeps every finished page's content stream until `save()` (about 14 KB a
page, 0.25 KB a row), so a PDF cannot be as flat as csv/xlsx/json. `max_rows` (default
200,000 rows, ~3,600 pages, ~50 MB) bounds it: a larger export is refused up front when
`expected_rows` says so, or when the row after the cap arrives, with a message pointing to
csv or xlsx.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

from reportlab.lib.colors import Color
from reportlab.lib.pagesizes import A4, landscape
from reportlab.pdfgen.canvas import Canvas

from ferry.datasets.spec import Kind
from ferry.errors import InvalidArgument
from ferry.formats.base import Table
from ferry.formats.cells import utc
from ferry.formats.pdf_fonts import font_pair

MARGIN = 36.0  # points (half an inch)
FONT_SIZE = 8.0
ROW_HEIGHT = 12.0
HEADER_BAND = 52.0  # title + filters line above the table
FOOTER_BAND = 24.0
_KIND_CHARS = {Kind.INT: 8, Kind.FLOAT: 10, Kind.DATE: 10, Kind.TIMESTAMP: 20, Kind.STR: 16}
_ZEBRA = Color(0.94, 0.95, 0.97)
_HEAD = Color(0.84, 0.87, 0.92)
_TOTAL_FORM = "ferryPageTotal"
MAX_ROWS = 200_000


def _render(value: Any, kind: Kind) -> str:
    if value is None:
        return ""
    if kind is Kind.TIMESTAMP and isinstance(value, dt.datetime):
        return utc(value).strftime("%Y-%m-%d %H:%M UTC")
    if kind is Kind.FLOAT and isinstance(value, float):
        return f"{value:g}"
    return str(value)


class PdfFormat:
    name = "pdf"
    extension = "pdf"
    content_type = "application/pdf"

    def __init__(self, font_dir: str | None = None, max_rows: int = MAX_ROWS) -> None:
        self.font_dir = font_dir
        self.max_rows = max_rows

    def _too_many(self, n: int) -> InvalidArgument:
        return InvalidArgument(
            f"a pdf export holds at most {self.max_rows:,} rows and this one has "
            f"{'more' if n < 0 else f'{n:,}'}; use csv or xlsx, or narrow the filters",
            field="limit",
        )

    def write(
        self,
        out: IO[bytes],
        table: Table,
        rows: Iterable[Sequence[Any]],
        progress: Callable[[int], object] | None = None,
    ) -> int:
        """Write the paged table to `out`; returns the number of rows written.

        Raises InvalidArgument (field "limit") past `max_rows`.
        """
        if table.expected_rows > self.max_rows:
            raise self._too_many(table.expected_rows)
        font, bold = font_pair(self.font_dir)
        cols = list(table.columns)
        # Character budget per column: its kind's usual width, at least the label's.
        chars = [max(_KIND_CHARS[c.kind], min(len(c.label), 24)) for c in cols]
        char_w = FONT_SIZE * 0.55
        portrait_w = A4[0] - 2 * MARGIN
        size = A4 if sum(chars) * char_w <= portrait_w else landscape(A4)
        width, height = size
        scale = (width - 2 * MARGIN) / (sum(chars) * char_w)
        col_w = [n * char_w * scale for n in chars]
        xs = list(itertools.accumulate([MARGIN, *col_w[:-1]]))
        fits = [max(int(w / char_w) - 1, 1) for w in col_w]
        per_page = int((height - 2 * MARGIN - HEADER_BAND - FOOTER_BAND) / ROW_HEIGHT) - 1
        filters = ", ".join(f"{k}: {v}" for k, v in table.filters.items()) or "none"
        subtitle = (
            f"Filters: {filters}  ·  Generated "
            f"{utc(table.generated_at).strftime('%Y-%m-%d %H:%M UTC')}"
        )

        c = Canvas(out, pagesize=size, pageCompression=1, invariant=False)
        c.setTitle(table.title)
        c.setAuthor("Ferry")
        c.setSubject(subtitle)
        it = iter(rows)
        n = 0
        page = 0
        while True:
            chunk = list(itertools.islice(it, per_page))
            if not chunk and page > 0:
                break
            page += 1
            top = height - MARGIN
            c.setFont(bold, 14)
            c.drawString(MARGIN, top - 14, table.title)
            c.setFont(font, FONT_SIZE)
            c.drawString(MARGIN, top - 30, subtitle)
            y = top - HEADER_BAND
            c.setFillColor(_HEAD)
            c.rect(MARGIN, y - 3, width - 2 * MARGIN, ROW_HEIGHT, stroke=0, fill=1)
            for i in range(1, len(chunk) + 1, 2):  # zebra: every other data row
                c.setFillColor(_ZEBRA)
                c.rect(
                    MARGIN,
                    y - 3 - (i + 1) * ROW_HEIGHT + ROW_HEIGHT,
                    width - 2 * MARGIN,
                    ROW_HEIGHT,
                    stroke=0,
                    fill=1,
                )
            c.setFillColorRGB(0, 0, 0)
            for j, col in enumerate(cols):
                # One text object per column per page: far cheaper than a call per cell.
                text = c.beginText(xs[j] + 2, y)
                text.setFont(bold, FONT_SIZE)
                text.setLeading(ROW_HEIGHT)
                text.textLine(_cut(col.label, fits[j]))
                text.setFont(font, FONT_SIZE)
                kind, fit = col.kind, fits[j]
                for row in chunk:
                    text.textLine(_cut(_render(row[j], kind), fit))
                c.drawText(text)
            n += len(chunk)
            if n > self.max_rows:
                raise self._too_many(-1)
            c.setFont(font, FONT_SIZE)
            label = f"Page {page} of "
            c.drawRightString(width - MARGIN - 24, MARGIN - 12, label)
            c.saveState()
            c.translate(width - MARGIN - 24, MARGIN - 12)
            c.doForm(_TOTAL_FORM)
            c.restoreState()
            c.showPage()
            if progress is not None:
                progress(n)
            if len(chunk) < per_page:
                break
        c.beginForm(_TOTAL_FORM)
        c.setFont(font, FONT_SIZE)
        c.drawString(0, 0, str(page))
        c.endForm()
        c.save()
        return n


def _cut(s: str, fit: int) -> str:
    return s if len(s) <= fit else s[: fit - 1] + "…"

"""PDF: a paged table drawn straight on a reportlab canvas, one page at a time.

No platypus story is built (that would hold every row); each page is drawn from the rows
it holds and then left behind. Every page carries the title, the filters and generation
time, the header row, zebra rows and "Page n of m". The total m is not known while
streaming, so each footer draws the number from one form XObject that is filled in after
the last page: exact even when `expected_rows` is unknown or wrong, at constant cost.
Column widths come from the content (the first rows are measured before page one is
drawn): a date, timestamp or number is never cut (a later, wider one is drawn smaller),
text wraps in the header and is cut with an ellipsis in cells, numbers are right-aligned,
and only rows that exist get a zebra band. Pages are landscape when the columns need it.
Header cells show column labels: a PDF is for people, not for re-import. A table with a
language has its labels, words, numbers and dates in it (ferry.tabular.labels, Babel). Bookkeeping
columns (`omit_unless_asked`) are left out unless the export lists them in `fields`.

Memory: reportlab keeps every finished page's content stream until `save()` and then
builds the whole file in memory. Here each page's content stream is compressed and
spooled to a temporary file the moment the page is finished, and `save()` writes the file
object by object straight to `out` (_StreamingDocument), so what stays in memory per page
is reportlab's small page dictionary: a million rows (about 18,000 pages) keep memory
flat. `max_rows` (plugins.formats.pdf.max_rows, default 10,000,000) is a size limit for
people, not a memory guard: a larger export is refused up front when `expected_rows` says
so, or when the row after the cap arrives, with a message pointing to csv or xlsx.
"""

from __future__ import annotations

import datetime as dt
import itertools
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any, ClassVar

from pydantic import Field
from reportlab.lib.colors import Color
from reportlab.lib.pagesizes import A4, landscape
from reportlab.pdfbase import pdfdoc
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from ferry.config import Strict
from ferry.datasets.spec import Kind
from ferry.errors import InvalidArgument
from ferry.tabular import labels
from ferry.tabular.base import Table, TableColumn
from ferry.tabular.cells import utc
from ferry.tabular.pdf_fonts import font_pair

MARGIN = 36.0  # points (half an inch)
FONT_SIZE = 8.0
ROW_HEIGHT = 12.0
HEADER_BAND = 52.0  # title + filters line above the table
FOOTER_BAND = 24.0
# The widest value of a kind, so a date or timestamp column is never too narrow.
_KIND_SAMPLE = {Kind.DATE: "2026-09-30", Kind.TIMESTAMP: "2026-09-30 23:59 UTC", Kind.INT: "0000"}
_NEVER_CUT = (Kind.DATE, Kind.TIMESTAMP)
PAD = 3.0  # points of padding inside a cell on each side
SAMPLE_ROWS = 60  # rows measured for the column widths
MAX_TEXT_CHARS = 40  # a text column never asks for more than about this many characters
_ZEBRA = Color(0.94, 0.95, 0.97)
_HEAD = Color(0.84, 0.87, 0.92)
_TOTAL_FORM = "ferryPageTotal"
_TOTAL_FORM_DRAWN = "ferryPageTotalDrawn"
MAX_ROWS = 10_000_000
# Spooled page streams are read back through a buffer of this size when the file is written.
SPOOL_MEMORY = 1024 * 1024


class PdfSettings(Strict):
    # The most rows one pdf export may hold: a size for people to read, not a memory
    # guard (pages stream to disk as they are made; memory stays flat).
    max_rows: int = Field(MAX_ROWS, ge=1)


def _render(value: Any, kind: Kind, language: str = "") -> str:
    if value is None:
        return ""
    if language:
        return labels.cell(value, kind, language)
    if kind is Kind.TIMESTAMP and isinstance(value, dt.datetime):
        return utc(value).strftime("%Y-%m-%d %H:%M UTC")
    if kind is Kind.FLOAT and isinstance(value, float):
        return f"{value:g}"
    return str(value)


class PdfFormat:
    name = "pdf"
    extension = "pdf"
    content_type = "application/pdf"
    # Columns an export leaves out of this format unless `fields` names them.
    omit_unless_asked = ("created_at", "updated_at", "deleted_at")
    settings_model: ClassVar[type[Strict]] = PdfSettings

    def __init__(
        self, app: Any = None, *, font_dir: str | None = None, max_rows: int = MAX_ROWS
    ) -> None:
        """Built as `factory(app)`: `plugins.formats.pdf` (ferry.yaml) when there is an app."""
        self.font_dir = font_dir
        self.max_rows = max_rows
        if app is not None:
            settings: PdfSettings = app.plugin_settings("ferry.formats", "pdf")
            self.max_rows = settings.max_rows

    def _too_many(self, n: int) -> InvalidArgument:
        return InvalidArgument(
            f"a pdf export holds at most {self.max_rows:,} rows and this one has "
            f"{'more' if n < 0 else f'{n:,}'}; use csv or xlsx, or narrow the filters",
            field="limit",
            reason="TOO_MANY_ROWS",
            metadata={"max": str(self.max_rows)},
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
        it = iter(rows)
        # Widths come from the content: a first sample of rows (the first page's worth)
        # is measured before anything is drawn.
        sample = list(itertools.islice(it, SAMPLE_ROWS))
        lang = table.language
        texts = [[_render(r[j], c.kind, lang) for r in sample] for j, c in enumerate(cols)]
        size, col_w = _layout(cols, texts, font, bold, lang)
        with tempfile.TemporaryFile(prefix="ferry-pdf-") as spool:
            return self._pages(out, spool, table, it, sample, cols, size, col_w, font, bold,
                               progress)  # fmt: skip

    def _pages(
        self,
        out: IO[bytes],
        spool: IO[bytes],
        table: Table,
        it: Iterable[Sequence[Any]],
        sample: list[Sequence[Any]],
        cols: list[TableColumn],
        size: tuple[float, float],
        col_w: list[float],
        font: str,
        bold: str,
        progress: Callable[[int], object] | None,
    ) -> int:
        lang = table.language
        width, height = size
        xs = list(itertools.accumulate([MARGIN, *col_w[:-1]]))
        heads = [_wrap(c.label, w - 2 * PAD, bold) for c, w in zip(cols, col_w, strict=True)]
        head_lines = max([len(h) for h in heads] or [1])
        head_h = head_lines * ROW_HEIGHT
        per_page = int((height - 2 * MARGIN - HEADER_BAND - FOOTER_BAND - head_h) / ROW_HEIGHT)
        per_page = max(per_page, 1)
        numeric = [c.kind in (Kind.INT, Kind.FLOAT) for c in cols]
        exact = [c.kind in _NEVER_CUT for c in cols]
        if lang:
            filters = ", ".join(
                f"{labels.field_label(k, lang)}: {v}" for k, v in table.filters.items()
            ) or labels.word("none", lang)
            subtitle = (
                f"{labels.word('filters', lang)}: {filters}  ·  {labels.word('generated', lang)} "
                f"{labels.cell(table.generated_at, Kind.TIMESTAMP, lang)}"
            )
        else:
            filters = ", ".join(f"{k}: {v}" for k, v in table.filters.items()) or "none"
            subtitle = (
                f"Filters: {filters}  ·  Generated "
                f"{utc(table.generated_at).strftime('%Y-%m-%d %H:%M UTC')}"
            )

        c = Canvas(out, pagesize=size, pageCompression=1, invariant=False)
        late = _StreamingDocument.adopt(c, spool, _TOTAL_FORM)
        c.setTitle(table.title)
        c.setAuthor("Ferry")
        c.setSubject(subtitle)
        it = itertools.chain(sample, it)
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
            y = top - HEADER_BAND  # the first header line's baseline
            c.setFillColor(_HEAD)
            c.rect(
                MARGIN, y - 3 - head_h + ROW_HEIGHT, width - 2 * MARGIN, head_h, stroke=0, fill=1
            )
            first = y - head_h  # the first data row's baseline
            for i in range(1, len(chunk), 2):  # zebra: every other row that is there
                c.setFillColor(_ZEBRA)
                c.rect(MARGIN, first - 3 - i * ROW_HEIGHT, width - 2 * MARGIN, ROW_HEIGHT,
                       stroke=0, fill=1)  # fmt: skip
            c.setFillColorRGB(0, 0, 0)
            for j, col in enumerate(cols):
                right = xs[j] + col_w[j] - PAD
                avail = col_w[j] - 2 * PAD
                for k, line in enumerate(heads[j]):
                    c.setFont(bold, FONT_SIZE)
                    if numeric[j]:
                        c.drawRightString(right, y - k * ROW_HEIGHT, line)
                    else:
                        c.drawString(xs[j] + PAD, y - k * ROW_HEIGHT, line)
                kind = col.kind
                if numeric[j] or exact[j]:
                    # One text object per column per page too (a text object per cell
                    # was a tenth of the time), each cell placed on its own: numbers
                    # right-aligned, and shrunk, never cut, when wider than the column.
                    cells = c.beginText()
                    cells.setFont(font, FONT_SIZE)
                    current = FONT_SIZE
                    for r, row in enumerate(chunk):
                        value = _render(row[j], kind, lang)
                        w = _w(value, font)
                        fs = _fit_size(w, avail)
                        if fs != current:
                            cells.setFont(font, fs)
                            current = fs
                        x = right - w * fs / FONT_SIZE if numeric[j] else xs[j] + PAD
                        cells.setTextOrigin(x, first - r * ROW_HEIGHT)
                        cells.textOut(value)
                    c.drawText(cells)
                    continue
                # Text: one text object per column per page, cut to the column's width.
                text = c.beginText(xs[j] + PAD, first)
                text.setFont(font, FONT_SIZE)
                text.setLeading(ROW_HEIGHT)
                for row in chunk:
                    text.textLine(_cut_to(_render(row[j], kind, lang), avail, font))
                c.drawText(text)
            n += len(chunk)
            if n > self.max_rows:
                raise self._too_many(-1)
            c.setFont(font, FONT_SIZE)
            label = labels.word("page", lang).format(n=page) + " "
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
        c.beginForm(_TOTAL_FORM_DRAWN)
        c.setFont(font, FONT_SIZE)
        c.drawString(0, 0, str(page))
        c.endForm()
        late.target = pdfdoc.xObjectName(_TOTAL_FORM_DRAWN)
        c.save()
        return n


def _w(text: str, font: str, size: float = FONT_SIZE) -> float:
    return float(stringWidth(text, font, size))


def _layout(
    cols: Sequence[TableColumn],
    texts: Sequence[Sequence[str]],
    font: str,
    bold: str,
    language: str = "",
) -> tuple[tuple[float, float], list[float]]:
    """(page size, column widths). Each column wants its widest sampled cell (a date,
    timestamp or number never less than its full width), at least the longest word of
    its label (labels wrap); portrait when that fits, else landscape, where text columns
    give way down to a few characters (their cells are cut with an ellipsis)."""
    want: list[float] = []
    least: list[float] = []
    for col, cells in zip(cols, texts, strict=True):
        word = max([_w(x, bold) for x in col.label.split()] or [0.0])
        widest = max([_w(x, font) for x in cells] or [0.0])
        sample = _KIND_SAMPLE.get(col.kind, "")
        if language and col.kind in _NEVER_CUT:
            sample = labels.widest_date(col.kind, language)
        floor = _w(sample, font)
        if col.kind in _NEVER_CUT or col.kind in (Kind.INT, Kind.FLOAT):
            need = max(word, widest, floor) + 2 * PAD
            want.append(need)
            least.append(need)
        else:
            cap = _w("n" * MAX_TEXT_CHARS, font)
            want.append(max(word, min(widest, cap), floor) + 2 * PAD)
            least.append(max(min(word, _w("n" * 6, font)), _w("n" * 4, font)) + 2 * PAD)
    portrait = A4[0] - 2 * MARGIN
    size = A4 if sum(want) <= portrait else landscape(A4)
    avail = size[0] - 2 * MARGIN
    # Room to spare: headers on one line where that still fits.
    whole = [max(w, _w(c.label, bold) + 2 * PAD) for w, c in zip(want, cols, strict=True)]
    if sum(whole) <= avail:
        want = whole
    total = sum(want)
    if total <= avail:  # spread what is left over the text columns (or all)
        grow = [i for i, c in enumerate(cols) if c.kind is Kind.STR] or list(range(len(cols)))
        extra = (avail - total) / len(grow)
        return size, [w + (extra if i in grow else 0.0) for i, w in enumerate(want)]
    give = sum(w - m for w, m in zip(want, least, strict=True))
    over = total - avail
    if give >= over:
        f = over / give
        return size, [w - (w - m) * f for w, m in zip(want, least, strict=True)]
    # Even at their least it does not fit: scale everything (numbers and dates then shrink
    # their font to stay whole, see _fit_size).
    return size, [m * avail / sum(least) for m in least]


def _wrap(label: str, width: float, font: str) -> list[str]:
    """A header label in lines that fit `width` (a word longer than that stays whole)."""
    lines: list[str] = []
    for word in label.split():
        if lines and _w(lines[-1] + " " + word, font) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return (lines or [""])[:3]


def _fit_size(w: float, width: float) -> float:
    """The font size at which a value `w` points wide at FONT_SIZE fits `width` whole
    (numbers and dates are never cut)."""
    return FONT_SIZE if w <= width or w == 0 else max(4.0, FONT_SIZE * width / w)


def _cut_to(s: str, width: float, font: str) -> str:
    """`s` on one line (no line breaks), cut with an ellipsis to fit `width`."""
    s = " ".join(s.split()) if ("\n" in s or "\r" in s or "\t" in s) else s
    if _w(s, font) <= width:
        return s
    lo, hi = 0, len(s)
    while lo < hi:  # the longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if _w(s[:mid] + "…", font) <= width:
            lo = mid
        else:
            hi = mid - 1
    return s[:lo] + "…"


class _Spooled(pdfdoc.PDFObject):  # type: ignore[misc]
    """An object written to the spool file when its page was finished ("N 0 obj ...
    endobj", exactly as reportlab formats it), standing in for it until the PDF is
    written: a few hundred bytes in memory instead of the page and its content stream."""

    def __init__(self, name: str, spool: IO[bytes], at: int, length: int) -> None:
        self.__InternalName__ = name
        self.spool, self.at, self.length = spool, at, length

    def read(self) -> bytes:
        self.spool.seek(self.at)
        return self.spool.read(self.length)


class _LateForm(pdfdoc.PDFObject):  # type: ignore[misc]
    """The "Page n of m" total's form, named before the first page (whose resources point
    at it) and drawn after the last, when m is known: it formats as the form `target`."""

    target = ""

    def format(self, document: Any) -> bytes:
        return bytes(document.idToObject[self.target].format(document))


class _Out(pdfdoc.PDFFile):  # type: ignore[misc]
    """reportlab's output collector, writing each piece to the file as it comes."""

    def __init__(self, out: IO[bytes], version: Any) -> None:
        super().__init__(version)  # collects the file header
        out.write(b"".join(self.strings))
        self.strings = []
        self.write = out.write  # type: ignore[assignment]


class _StreamingDocument(pdfdoc.PDFDocument):  # type: ignore[misc]
    """reportlab's document with pages that leave memory as they are made: when the
    canvas finishes a page, the page's dictionary and content stream are formatted (as
    reportlab would at save) into the spool file and stand-ins take their place; at save
    the file is written object by object to the output, the spooled ones copied, instead
    of being built whole in memory. Only for documents without encryption, signatures,
    outlines or links, as the exports are."""

    _spool: IO[bytes]
    _out: IO[bytes]
    _late: _LateForm

    @classmethod
    def adopt(cls, canvas: Canvas, spool: IO[bytes], late_form: str) -> _LateForm:
        """Make `canvas`'s document (already set up by the canvas) one of these; returns
        the stand-in for form `late_form`, which pages may use before it is drawn (set
        its `target` to the form drawn in its place)."""
        held = vars(canvas)  # reportlab's stubs leave out the canvas's document and file
        doc: Any = held["_doc"]
        doc.__class__ = cls
        doc._spool = spool
        doc._out = held["_filename"]  # the file object the canvas writes to
        doc.Reference(doc.Pages)  # numbered now: every page names it as its parent
        late = _LateForm()
        doc._late = late
        doc.Reference(late, pdfdoc.xObjectName(late_form))
        return late

    def addPage(self, page: Any) -> None:
        super().addPage(page)
        name = page.__InternalName__
        spooled = self._spool_object(name, page)
        doc: Any = self  # reportlab's stubs leave out most of PDFDocument
        doc.Pages.pages[-1] = spooled
        contents = page.Contents.__InternalName__  # numbered while the page was formatted
        self._spool_object(contents, page.Contents)

    def _spool_object(self, name: str, obj: Any) -> _Spooled:
        data = pdfdoc.PDFIndirectObject(name, obj).format(self)
        self._spool.seek(0, 2)
        spooled = _Spooled(name, self._spool, self._spool.tell(), len(data))
        self._spool.write(data)
        self.idToObject[name] = spooled
        return spooled

    def format(self) -> bytes:
        """reportlab's PDFDocument.format, writing to the output as it goes and copying
        the spooled objects (no encryption: the exports use none)."""
        doc: Any = self  # reportlab's stubs leave out most of PDFDocument
        self.encrypt.prepare(self)
        cat, info = doc.Catalog, self.info
        doc.Reference(cat)
        doc.Reference(info)
        out = _Out(self._out, doc._pdfVersion)
        self.__accum__ = out
        ids: list[str] = []
        counter = 0
        while True:  # objects may be registered while others are formatted
            counter += 1
            if counter not in self.numberToId:
                break
            oid = self.numberToId[counter]
            obj = self.idToObject[oid]
            if isinstance(obj, _Spooled):
                data = obj.read()
            else:
                data = pdfdoc.PDFIndirectObject(oid, obj).format(self)
            self.idToOffset[oid] = out.add(data)
            ids.append(oid)
        del self.__accum__
        if counter - 1 != len(self.numberToId):
            raise ValueError("pdf objects were registered out of order")
        xref = pdfdoc.PDFCrossReferenceTable()
        xref.addsection(0, ids)
        at = out.add(xref.format(self))
        trailer = pdfdoc.PDFTrailer(
            startxref=at,
            Size=len(self.numberToId) + 1,
            Root=doc.Reference(cat),
            Info=doc.Reference(info),
            Encrypt=None,
            ID=self.ID(),
        )
        out.add(trailer.format(self))
        return b""

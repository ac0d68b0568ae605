"""Reports as PDFs people read: a title block, a summary, tables, and charts drawn with
reportlab's own graphics (course results against the class, attendance, the performance
trend), page numbers, and DejaVu Sans so Greek names print (ferry.tabular.pdf_fonts).

`invariant` documents: no creation time, no random id, so the same report gives the same
bytes and its sha256 works as an ETag.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from reportlab import rl_config

# reportlab checks every attribute set on a chart's shapes and widgets against a type map
# (a developer aid, "set to zero for faster performance" in its settings). The charts are
# built by this module, not by users: with the checks, a student PDF took 88 ms; without,
# 57 ms. Set before reportlab.graphics is imported, as its shapes read it at class creation.
rl_config.shapeChecking = 0

from reportlab.graphics.charts.barcharts import (  # noqa: E402
    HorizontalBarChart,
    VerticalBarChart,
)
from reportlab.graphics.charts.legends import Legend  # noqa: E402
from reportlab.graphics.charts.lineplots import LinePlot  # noqa: E402
from reportlab.graphics.shapes import Drawing, String  # noqa: E402
from reportlab.graphics.widgets.markers import makeMarker  # noqa: E402
from reportlab.lib import colors  # noqa: E402
from reportlab.lib.enums import TA_RIGHT  # noqa: E402
from reportlab.lib.pagesizes import A4  # noqa: E402
from reportlab.lib.styles import ParagraphStyle  # noqa: E402
from reportlab.lib.units import mm  # noqa: E402
from reportlab.pdfbase.pdfmetrics import stringWidth  # noqa: E402
from reportlab.platypus import (  # noqa: E402
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from ferry.reports.words import CLASS_NOTE, words  # noqa: E402
from ferry.tabular.pdf_fonts import font_pair  # noqa: E402
from ferry.v1 import reports_pb2 as pb  # noqa: E402

ACCENT = colors.Color(0.16, 0.33, 0.6)
SOFT = colors.Color(0.62, 0.7, 0.82)
HEAD = colors.Color(0.86, 0.89, 0.94)
ZEBRA = colors.Color(0.96, 0.97, 0.98)
WIDTH = A4[0] - 36 * mm
HALF = WIDTH / 2 - 8  # a table beside another
PAD = 3.0  # a table cell's left and right padding in _table


class _Styles:
    def __init__(self, language: str = "en") -> None:
        self.w = words(language or "en")  # the printed words, in the report's language
        self.font, self.bold = font_pair()
        f, b = self.font, self.bold
        self.title = ParagraphStyle("t", fontName=b, fontSize=17, leading=21, textColor=ACCENT)
        self.sub = ParagraphStyle("s", fontName=f, fontSize=9.5, leading=13, textColor=colors.grey)
        self.h2 = ParagraphStyle(
            "h", fontName=b, fontSize=12, leading=16, spaceBefore=8, spaceAfter=4, textColor=ACCENT
        )
        self.body = ParagraphStyle("b", fontName=f, fontSize=8.5, leading=11)
        self.cell = ParagraphStyle("c", fontName=f, fontSize=8, leading=10)
        self.num = ParagraphStyle("n", parent=self.cell, alignment=TA_RIGHT)
        self.headcell = ParagraphStyle("hc", fontName=b, fontSize=8, leading=10)
        self.headnum = ParagraphStyle("hn", parent=self.headcell, alignment=TA_RIGHT)


def _p(text: Any, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(str(text)), style)


def _cell(st: _Styles, value: Any, width: float, numeric: bool) -> str | Paragraph:
    """`value` as a plain string when it fits `width` on one line (numbers always do:
    their column is as wide as its widest number), else a Paragraph that wraps."""
    text = str(value)
    if "\n" not in text and (numeric or stringWidth(text, st.font, 8) + 2 * PAD <= width):
        return text
    return _p(text, st.num if numeric else st.cell)


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if v != int(v) else f"{int(v)}"


def _widths(
    st: _Styles,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    numeric: Sequence[int],
    width: float = WIDTH,
) -> list[float]:
    """Column widths from the content: each column wants its longest cell (and at least
    its header's longest word); when they do not fit, text columns give way (down to
    their longest word), never numbers or dates."""
    pad = 8.0

    def w(text: str, bold: bool = False) -> float:
        return float(stringWidth(text, st.bold if bold else st.font, 8))

    want, least = [], []
    for i, h in enumerate(header):
        cells = [str(r[i]) for r in rows]
        words = [x for c in [h, *cells] for x in c.split()] or [""]
        word = max(w(x, bold=True) for x in words)
        full = max([w(h, bold=True), *(w(c) for c in cells)])
        if i in numeric:
            least.append(full + pad)
        else:
            least.append(min(word, width / 3) + pad)
        want.append(max(least[-1], full + pad))
    total = sum(want)
    if total <= width:
        extra = (width - total) / len(want)
        return [x + extra for x in want]
    give = sum(x - m for x, m in zip(want, least, strict=True))
    over = total - width
    if give <= 0:
        return [x * width / total for x in want]
    f = min(1.0, over / give)
    return [x - (x - m) * f for x, m in zip(want, least, strict=True)]


def _table(
    st: _Styles,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    numeric: Sequence[int] = (),
    width: float = WIDTH,
) -> Table:
    """Header wraps, long text wraps, numbers right-aligned; zebra only on real rows.

    A body cell that fits its column on one line is a plain string in the cell font; only
    text that must wrap becomes a Paragraph. Paragraphs were most of a report's render
    time (parsed as markup, wrapped and drawn one by one: about 3,700 per 20 reports)."""
    widths = _widths(st, header, rows, numeric, width)
    head = [_p(h, st.headnum if i in numeric else st.headcell) for i, h in enumerate(header)]
    body = [[_cell(st, v, widths[i], i in numeric) for i, v in enumerate(row)] for row in rows]
    t = Table([head, *body], colWidths=widths, repeatRows=1)
    style: list[Any] = [
        ("FONTNAME", (0, 1), (-1, -1), st.font),
        ("FONTSIZE", (0, 1), (-1, -1), 8),
        ("LEADING", (0, 1), (-1, -1), 10),
        *[("ALIGN", (i, 1), (i, -1), "RIGHT") for i in numeric],
        ("BACKGROUND", (0, 0), (-1, 0), HEAD),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, ACCENT),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LEFTPADDING", (0, 0), (-1, -1), PAD),
        ("RIGHTPADDING", (0, 0), (-1, -1), PAD),
    ]
    style += [("BACKGROUND", (0, i), (-1, i), ZEBRA) for i in range(2, len(body) + 1, 2)]
    t.setStyle(TableStyle(style))
    return t


def _footer(title: str, st: _Styles) -> Any:
    page = st.w("Page {n}", n="{n}")

    def draw(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(st.font, 7.5)
        canvas.setFillColor(colors.grey)
        canvas.drawString(18 * mm, 10 * mm, title)
        canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, page.format(n=doc.page))
        canvas.restoreState()

    return draw


def _doc(buf: io.BytesIO, title: str, subject: str) -> SimpleDocTemplate:
    return SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=title,
        author="Ferry",
        subject=subject,
        creator="Ferry reports",
        invariant=1,
    )


def nice_axis(top: float, ticks: int = 6, integer: bool = False) -> tuple[float, float]:
    """(axis maximum, step) of an axis from 0 that holds `top`: the step is a round number
    (1, 2, 2.5 or 5 times a power of ten; whole with `integer`), at most `ticks` steps, and
    the maximum a whole number of steps at or above `top` (1 step of 1 for nothing)."""
    if not top > 0 or not math.isfinite(top):
        return 1.0, 1.0
    base = 10.0 ** math.floor(math.log10(top / ticks))
    step = base * 10
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        s = m * base
        if integer and (s < 1 or s != int(s)):
            continue
        if math.ceil(top / s - 1e-9) <= ticks:
            step = s
            break
    step = max(step, 1.0) if integer else step
    return max(1, math.ceil(top / step - 1e-9)) * step, step


def _steps(top: float, step: float) -> list[float]:
    n = round(top / step)
    return [round(i * step, 10) for i in range(n + 1)]


def _fit_labels(
    labels: Sequence[str], slot: float, font: str, size: float, longest: float = 70.0
) -> tuple[list[str], int]:
    """Category labels that never overlap: as they are when each fits its slot; else
    rotated (30 degrees, or 90 when slots are narrower than two lines) and cut to `longest`
    points with an ellipsis. Rotated labels of neighbouring slots are `slot * sin(angle)`
    apart, more than a line."""
    widest = max((stringWidth(x, font, size) for x in labels), default=0.0)
    if widest + 4 <= slot:
        return list(labels), 0
    angle = 30 if slot * 0.5 > size * 1.2 else 90
    tail = labels[0] if len(labels) > 1 else ""
    for x in labels[1:]:
        while tail and not x.endswith(tail):
            tail = tail[1:]
    if len(tail) >= 3 and all(len(x) > len(tail) for x in labels):
        labels = [x[: -len(tail)] for x in labels]  # "-2026F" of every code says nothing
    out = []
    for x in labels:
        while stringWidth(x, font, size) > longest and len(x) > 2:
            x = x[:-2] + "…"
        out.append(x)
    return out, angle


def _value_axis(axis: Any, st: _Styles, values: Sequence[float], integer: bool = False) -> None:
    top, step = nice_axis(max(values, default=0.0), integer=integer)
    axis.valueMin, axis.valueMax, axis.valueStep = 0, top, step
    axis.valueSteps = _steps(top, step)
    axis.labels.fontName, axis.labels.fontSize = st.font, 7
    axis.labelTextFormat = lambda v: _fmt(float(v))


def _bar_chart(
    st: _Styles, labels: list[str], series: list[list[float]], names: list[str]
) -> Drawing:
    h = 150
    plot_w = int(WIDTH - 140)
    names_fit, angle = _fit_labels(labels, plot_w / max(1, len(labels)), st.font, 7)
    drop = 0 if angle == 0 else (42 if angle == 30 else 70)  # room for rotated labels
    d = Drawing(WIDTH, h + 30 + drop)
    ch = VerticalBarChart()
    ch.x, ch.y, ch.width, ch.height = 36, 30 + drop, plot_w, int(h - 20)
    ch.data = series
    _value_axis(ch.valueAxis, st, [v for row in series for v in row])
    ch.categoryAxis.categoryNames = names_fit
    ch.categoryAxis.labels.fontName = st.font
    ch.categoryAxis.labels.fontSize = 7
    ch.categoryAxis.labels.angle = angle
    ch.categoryAxis.labels.boxAnchor = "n" if angle == 0 else ("ne" if angle == 30 else "e")
    palette = [ACCENT, SOFT]
    for i in range(len(series)):
        ch.bars[i].fillColor = palette[i % 2]
        ch.bars[i].strokeColor = None
    ch.barSpacing, ch.groupSpacing = 1, 8
    d.add(ch)
    lg = Legend()
    lg.x, lg.y = int(WIDTH - 96), h + drop
    lg.fontName, lg.fontSize = st.font, 7.5
    lg.colorNamePairs = [(palette[i % 2], n) for i, n in enumerate(names)]
    d.add(lg)
    title = st.w("Course results (%)")
    d.add(String(0, h + 16 + drop, title, fontName=st.bold, fontSize=9))
    return d


def _attendance_chart(st: _Styles, counts: Sequence[pb.StatusCount]) -> Drawing:
    h = 22 * max(1, len(counts)) + 30
    d = Drawing(WIDTH / 2 - 6, h + 16)
    ch = HorizontalBarChart()
    ch.x, ch.y, ch.width, ch.height = 56, 14, int(WIDTH / 2 - 80), int(h - 24)
    ch.data = [[c.count for c in counts] or [0]]
    ch.categoryAxis.categoryNames = [st.w(c.status) for c in counts] or ["-"]
    ch.categoryAxis.labels.fontName = st.font
    ch.categoryAxis.labels.fontSize = 7
    _value_axis(ch.valueAxis, st, [float(c.count) for c in counts], integer=True)
    ch.bars[0].fillColor = ACCENT
    ch.bars[0].strokeColor = None
    d.add(ch)
    d.add(String(0, h + 4, st.w("Attendance (days)"), fontName=st.bold, fontSize=9))
    return d


def _trend_chart(st: _Styles, weekly: Sequence[pb.PerformancePoint], label: str) -> Drawing:
    """Weekly averages against the week's start (a date), weeks without marks left as gaps
    in time, not squeezed out."""
    h = 130
    d = Drawing(WIDTH / 2 - 6, h + 16)
    lp = LinePlot()
    lp.x, lp.y, lp.width, lp.height = 30, 40, int(WIDTH / 2 - 56), int(h - 50)
    weeks = [dt.date.fromisoformat(p.week) for p in weekly]
    first = weeks[0] if weeks else None
    pts = (
        [((w - first).days / 7, p.average) for w, p in zip(weeks, weekly, strict=True)]
        if (first)
        else [(0.0, 0.0)]
    )
    lp.data = [pts]
    lp.lines[0].strokeColor = ACCENT
    lp.lines[0].strokeWidth = 1.5
    lp.lines[0].symbol = makeMarker("FilledCircle", size=3, fillColor=ACCENT)  # type: ignore[no-untyped-call]
    span = max(x for x, _ in pts)
    _, step = nice_axis(span, ticks=5, integer=True) if span else (0.0, 1.0)
    lp.xValueAxis.valueMin, lp.xValueAxis.valueMax = -0.5, span + 0.5
    lp.xValueAxis.valueSteps = [float(i) for i in range(0, int(span) + 1, int(step))]

    def week_of(x: float) -> str:
        return str(first + dt.timedelta(weeks=round(x))) if first else ""

    lp.xValueAxis.labelTextFormat = week_of
    lp.xValueAxis.labels.fontName = st.font
    lp.xValueAxis.labels.fontSize = 6.5
    lp.xValueAxis.labels.angle = 30
    lp.xValueAxis.labels.boxAnchor = "ne"
    _value_axis(lp.yValueAxis, st, [y for _, y in pts])
    d.add(lp)
    shown = st.w({"not_enough_data": "not enough data"}.get(label, label)) if label else ""
    title = st.w("Performance by week") + (f" ({shown})" if shown else "")
    d.add(String(0, h + 4, title, fontName=st.bold, fontSize=9))
    return d


def student_story(r: pb.StudentReport, st: _Styles) -> list[Any]:
    w = st.w
    name = f"{r.first_name} {r.last_name}"
    rng = r.semester or (
        f"{r.date_from or '…'} - {r.date_to or '…'}"
        if (r.date_from or r.date_to)
        else w("all data")
    )
    story: list[Any] = [
        _p(w("Student report: {name}", name=name), st.title),
        _p(
            f"{r.student_id} · {w('year {n}', n=r.year_level)} · {rng}"
            + (f" · {w('{a} to {b}', a=r.first_day, b=r.last_day)}" if r.first_day else ""),
            st.sub,
        ),
        Spacer(1, 6),
    ]
    if r.empty:
        story.append(_p(r.note, st.body))
        return story
    summary = [
        [
            w("Overall"),
            f"{r.overall_percent:.2f}%" if r.credits_attempted or r.overall_percent else "-",
        ],
        [w("GPA"), f"{r.gpa:.2f}"],
        [
            w("Credits"),
            w(
                "{earned} earned of {attempted}",
                earned=r.credits_earned,
                attempted=r.credits_attempted,
            ),
        ],
        [
            w("Attendance"),
            w("{rate}% of {days} days", rate=f"{r.attendance.rate:.2f}", days=r.attendance.total),
        ],
        [
            w("Performance"),
            w("{avg} average, not enough data for a trend", avg=f"{r.performance.average:.2f}")
            if r.performance.trend in ("", "not_enough_data")
            else w(
                "{avg} average, {trend} trend ({slope}/week)",
                avg=f"{r.performance.average:.2f}",
                trend=w(r.performance.trend),
                slope=f"{r.performance.trend_per_week:+.2f}",
            ),
        ],
    ]
    t = Table(
        [[_p(a, st.headcell), _p(b, st.cell)] for a, b in summary],
        colWidths=[0.2 * WIDTH, 0.5 * WIDTH],
        hAlign="LEFT",
    )
    t.setStyle(
        TableStyle(
            [
                ("LINEBELOW", (0, 0), (-1, -1), 0.25, HEAD),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ]
        )
    )
    story += [_p(w("Summary"), st.h2), t]
    graded = [c for c in r.courses if c.graded]
    if graded:
        story.append(Spacer(1, 8))
        story.append(
            _bar_chart(
                st,
                [c.course_code for c in graded],
                [
                    [c.weighted_percent for c in graded],
                    [c.class_average if c.has_class_average else 0 for c in graded],
                ],
                [w("Student"), w("Class average")],
            )
        )
    story.append(_p(w("Courses"), st.h2))
    story.append(
        _table(
            st,
            [
                w(x)
                for x in (
                    "Course",
                    "Teacher",
                    "Credits",
                    "Result %",
                    "Letter",
                    "Class avg %",
                    "Attendance %",
                )
            ],
            [
                [
                    f"{c.course_code} {c.title}",
                    c.teacher,
                    c.credits,
                    f"{c.weighted_percent:.2f}" if c.graded else "-",
                    c.letter or "-",
                    f"{c.class_average:.2f}" if c.has_class_average else "-",
                    f"{c.attendance.rate:.2f}" if c.attendance.total else "-",
                ]
                for c in r.courses
            ],
            numeric=(2, 3, 5, 6),
        )
    )
    charts = Table(
        [
            [
                _attendance_chart(st, r.attendance.counts),
                _trend_chart(st, r.performance.weekly, r.performance.trend),
            ]
        ],
        colWidths=[WIDTH / 2, WIDTH / 2],
    )
    story += [Spacer(1, 8), KeepTogether([charts])]
    # The charts' data, as tables.
    data_rows: list[list[Any]] = [[w(c.status), c.count] for c in r.attendance.counts]
    week_rows: list[list[Any]] = [
        [w.week, f"{w.average:.2f}", w.count] for w in r.performance.weekly
    ]
    if data_rows or week_rows:
        story.append(
            Table(
                [
                    [
                        _table(
                            st,
                            [w("Attendance"), w("Days")],
                            data_rows or [["-", 0]],
                            (1,),
                            HALF,
                        ),
                        _table(
                            st,
                            [w("Week starting"), w("Average"), w("Marks")],
                            week_rows or [["-", "-", 0]],
                            (1, 2),
                            HALF,
                        ),
                    ]
                ],
                colWidths=[WIDTH / 2, WIDTH / 2],
                style=[("VALIGN", (0, 0), (-1, -1), "TOP")],
            )
        )
    story.append(_p(w("Assessments"), st.h2))
    rows = [
        [
            c.course_code,
            a.assessment,
            _fmt(a.score),
            _fmt(a.max_score),
            _fmt(a.weight),
            f"{a.percent:.2f}",
            a.graded_on,
            a.comment,
        ]
        for c in r.courses
        for a in c.assessments
    ]
    if rows:
        story.append(
            _table(
                st,
                [
                    w(x)
                    for x in (
                        "Course",
                        "Assessment",
                        "Score",
                        "Max",
                        "Weight",
                        "%",
                        "Graded on",
                        "Comment",
                    )
                ],
                rows,
                numeric=(2, 3, 4, 5),
            )
        )
    if r.highlights:
        story.append(_p(w("Highlights"), st.h2))
        story.append(
            _table(
                st,
                [w("Semester"), w("Title"), w("Kind"), w("Description")],
                [[h.semester, h.title, h.kind, h.description] for h in r.highlights],
            )
        )
    story.append(_p(w("Grading scale"), st.h2))
    story.append(
        _p(
            "  ·  ".join(
                f"{b.letter} ≥ {_fmt(b.min_percent)}% ({w('{pts} pts', pts=_fmt(b.points))})"
                for b in r.grading_scale
            ),
            st.body,
        )
    )
    story.append(
        _p(w(CLASS_NOTE, n=r.min_class_size), st.sub)  # the configured threshold, not a constant
    )
    if r.policy:
        story.append(_p(r.policy, st.sub))
    return story


def student_pdf(r: pb.StudentReport) -> bytes:
    st = _Styles(r.language)
    buf = io.BytesIO()
    title = st.w("Student report {id}", id=r.student_id)
    doc = _doc(buf, title, f"{r.first_name} {r.last_name}")
    footer = _footer(f"{r.student_id} · {r.first_name} {r.last_name}", st)
    doc.build(student_story(r, st), onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()


def semester_pdf(r: pb.SemesterReport) -> bytes:
    st = _Styles(r.language)
    buf = io.BytesIO()
    doc = _doc(buf, st.w("Semester report {s}", s=r.semester), r.semester)
    footer = _footer(st.w("Semester {s}", s=r.semester), st)
    doc.build(semester_story(r, st), onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()


def semester_story(r: pb.SemesterReport, st: _Styles) -> list[Any]:
    w = st.w
    story: list[Any] = [
        _p(w("Semester report: {s}", s=r.semester), st.title),
        _p(
            w(
                "{c} courses · {n} students · average {a}% · attendance {r}%",
                c=len(r.courses),
                n=r.student_count,
                a=f"{r.average:.2f}",
                r=f"{r.attendance_rate:.2f}",
            ),
            st.sub,
        ),
        Spacer(1, 6),
    ]
    d = Drawing(WIDTH, 150)
    ch = VerticalBarChart()
    ch.x, ch.y, ch.width, ch.height = 36, 20, int(WIDTH - 60), 110
    ch.data = [[x.count for x in r.distribution] or [0]]
    ch.categoryAxis.categoryNames = [x.letter for x in r.distribution] or ["-"]
    ch.categoryAxis.labels.fontName = st.font
    _value_axis(ch.valueAxis, st, [float(x.count) for x in r.distribution], integer=True)
    ch.bars[0].fillColor = ACCENT
    d.add(ch)
    d.add(
        String(
            0,
            138,
            w("Grade distribution (students per letter, all courses)"),
            fontName=st.bold,
            fontSize=9,
        )
    )
    story.append(d)
    if r.distribution:  # the chart's data
        story.append(
            _table(
                st,
                [w("Letter"), *[x.letter for x in r.distribution]],
                [[w("Students"), *[x.count for x in r.distribution]]],
                numeric=tuple(range(1, len(r.distribution) + 1)),
            )
        )
    letters = [b.letter for b in r.grading_scale]
    story.append(_p(w("Courses"), st.h2))
    n = len(letters)
    story.append(
        _table(
            st,
            [
                *[w(x) for x in ("Course", "Teacher", "Enrolled", "Withdrawn")],
                *[w(x) for x in ("Average %", "Attendance %")],
                *letters,
            ],
            [
                [
                    f"{c.course_code} {c.title}",
                    c.teacher,
                    c.enrolled,
                    c.withdrawn,
                    f"{c.average:.2f}" if c.graded else "-",
                    f"{c.attendance_rate:.2f}" if c.attendance_days else "-",
                    *[x.count for x in c.distribution],
                ]
                for c in r.courses
            ],
            numeric=tuple(range(2, 6 + n)),
        )
    )
    story.append(_p(w("Students at risk ({n})", n=len(r.at_risk)), st.h2))
    t = r.thresholds
    story.append(
        _p(
            w(
                "Below {p}% overall (low_grade), below {a}% attendance (low_attendance), or "
                "daily performance falling by {t} or more a week over marks in at least {w} "
                "distinct weeks (falling_trend).",
                p=_fmt(t.min_percent),
                a=_fmt(t.min_attendance_rate),
                t=_fmt(t.falling_trend_per_week),
                w=t.min_trend_weeks,
            ),
            st.sub,
        )
    )
    if r.policy:
        story.append(_p(r.policy, st.sub))
    if r.at_risk:
        story.append(
            _table(
                st,
                [
                    w(x)
                    for x in (
                        "Student",
                        "Name",
                        "Overall %",
                        "Attendance %",
                        "Trend/week",
                        "Reasons",
                    )
                ],
                [
                    [
                        a.student_id,
                        a.name,
                        f"{a.overall_percent:.2f}" if a.graded else "-",
                        f"{a.attendance_rate:.2f}",
                        f"{a.trend_per_week:+.2f}",
                        "; ".join(a.reason_texts or a.reasons),
                    ]
                    for a in r.at_risk
                ],
                numeric=(2, 3, 4),
            )
        )
    if r.highlights:
        story.append(_p(w("Highlights"), st.h2))
        story.append(
            _table(
                st,
                [w("Student"), w("Title"), w("Kind"), w("Description")],
                [
                    [f"{h.student_id} {h.student_name}", h.title, h.kind, h.description]
                    for h in r.highlights
                ],
            )
        )
    return story


def failures_pdf(failures: Sequence[tuple[str, str]]) -> bytes:
    """The last page of a merged PDF: the students left out, and why."""
    st = _Styles()
    buf = io.BytesIO()
    doc = _doc(buf, "Students not included", "failures")
    story: list[Any] = [_p("Students not included", st.title), Spacer(1, 6)]
    if failures:
        story.append(_table(st, ["Student", "Reason"], list(failures)))
    else:
        story.append(_p("No student had a report to print.", st.body))
    footer = _footer("Students not included", st)
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()

"""Charts that fit their data: value axes from 0 to a round number at or above the largest
value, time axes in week-start dates, a legend, category labels that never overlap, and
each chart's data as a table. Read back from the built charts and from the PDF's text;
pages saved to test-artifacts/reports/ for a person to look at."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterator
from typing import Any

from reportlab.graphics.charts.barcharts import BarChart
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import KeepTogether, Table

from ferry.reports.render_pdf import (
    _fit_labels,
    _Styles,
    nice_axis,
    semester_pdf,
    semester_story,
    student_pdf,
    student_story,
)
from ferry.reports.semester import semester_report
from ferry.reports.settings import ReportSettings
from ferry.reports.student import scale_pb
from ferry.v1 import reports_pb2 as pb
from tests.reports.test_files import save_pages, text

ROUND = {1.0, 2.0, 2.5, 5.0}


def _mantissa(step: float) -> float:
    return round(step / 10 ** math.floor(math.log10(step)), 6)


def test_nice_axis_holds_every_value_with_a_round_step() -> None:
    rng = random.Random(4)
    values = [0.0, 1e-9, 0.3, 1, 3, 3.9, 4, 48, 59, 95, 100, 100.01, 1e6, 1e308]
    values += [rng.uniform(0, 10 ** rng.randrange(-3, 8)) for _ in range(300)]
    for v in values:
        for integer in (False, True):
            top, step = nice_axis(v, integer=integer)
            assert top >= v and top > 0, (v, top)
            assert round(top / step, 6) == round(top / step) <= 6, (v, top, step)
            assert _mantissa(step) in ROUND or step == 1.0, (v, step)
            if integer:
                assert step >= 1 and step == int(step), (v, step)
    assert nice_axis(3.9) == (4.0, 1.0)  # the performance axis that stopped at 3
    assert nice_axis(59, integer=True) == (60.0, 10.0)  # the distribution that ended at 48


def _five_courses() -> pb.StudentReport:
    r = pb.StudentReport(
        student_id="S000042",
        first_name="Ελένη",
        last_name="Νικολάου",
        year_level=11,
        grading_scale=scale_pb(ReportSettings()),
        policy="Withdrawn or dropped courses are shown as W.",
    )
    for code, title, pct, avg in [
        ("MATH201-2026F", "Μαθηματικά", 95.0, 77.5),
        ("PHYS101-2026F", "Φυσική", 88.1, 0.0),
        ("HIST301-2026F", "Ιστορία", 72.4, 70.2),
        ("ART110-2026F", "Art", 99.0, 81.0),
        ("GREEK201-2026F", "Νέα Ελληνικά", 64.0, 66.0),
    ]:
        c = r.courses.add(
            course_code=code, title=title, semester="2026-fall", credits=3, graded=True,
            weighted_percent=pct, letter="A", has_class_average=avg > 0, class_average=avg,
        )  # fmt: skip
        c.attendance.SetInParent()
        c.performance.SetInParent()
    for status, n in [("present", 59), ("late", 4), ("absent", 3)]:
        r.attendance.counts.add(status=status, count=n)
    r.attendance.total, r.attendance.rate = 66, 95.45
    start = dt.date(2025, 9, 1)
    for week, avg in [(0, 3.2), (1, 3.9), (5, 2.5), (20, 3.1), (52, 3.6)]:
        r.performance.weekly.add(week=str(start + dt.timedelta(weeks=week)), average=avg, count=2)
    r.performance.count, r.performance.average, r.performance.trend = 10, 3.2, "steady"
    return r


def _drawings(flowables: list[Any]) -> Iterator[Drawing]:
    for f in flowables:
        if isinstance(f, Drawing):
            yield f
        elif isinstance(f, KeepTogether):
            yield from _drawings(list(f._content))
        elif isinstance(f, Table):
            yield from _drawings([c for row in f._cellvalues for c in row])
        elif isinstance(f, list):
            yield from _drawings(f)


def _check_chart(chart: Any) -> list[float]:
    """Every value inside its axis: 0 .. the axis' last labelled step, which is its top."""
    if isinstance(chart, BarChart):
        axis, values = chart.valueAxis, [v for row in chart.data for v in row]
    else:
        axis, values = chart.yValueAxis, [y for line in chart.data for _, y in line]
    assert axis.valueMin == 0 and axis.valueSteps[0] == 0
    assert axis.valueSteps[-1] == axis.valueMax
    assert all(0 <= v <= axis.valueMax for v in values), (values, axis.valueMax)
    return [axis.valueMax]


def test_every_chart_value_lies_inside_its_axis() -> None:
    st = _Styles()
    r = _five_courses()
    charts = [c for d in _drawings(student_story(r, st)) for c in d.contents
              if isinstance(c, (BarChart, LinePlot))]  # fmt: skip
    assert len(charts) == 3  # results, attendance, performance
    tops = [t for c in charts for t in _check_chart(c)]
    assert tops == [100, 60, 4]
    trend = next(c for c in charts if isinstance(c, LinePlot))
    # The time axis is in weeks since the first, its labels the weeks' start dates.
    assert [x for x, _ in trend.data[0]] == [0, 1, 5, 20, 52]
    labels = [trend.xValueAxis.labelTextFormat(x) for x in trend.xValueAxis.valueSteps]
    assert labels[0] == "2025-09-01" and len(set(labels)) == len(labels)
    data = student_pdf(r)
    save_pages(data, "chart-student-five-courses")
    t = text(data)
    for expected in [
        "Student",  # the legend
        "Class average",
        "2025-09-01",  # a time axis label (and the weekly table)
        "Week starting",  # the weekly data as a table
        "Days",  # the attendance data as a table
        "100",  # the results axis' top
    ]:
        assert expected in t, expected


def test_a_single_week_has_one_date_on_its_axis() -> None:
    st = _Styles()
    r = pb.StudentReport(student_id="S1", first_name="A", last_name="B")
    r.performance.weekly.add(week="2026-09-07", average=3.9, count=2)
    r.performance.count, r.performance.trend = 2, "not_enough_data"
    r.courses.add(course_code="MATH", graded=True, weighted_percent=50)
    trend = next(c for d in _drawings(student_story(r, st)) for c in d.contents
                 if isinstance(c, LinePlot))  # fmt: skip
    labels = [trend.xValueAxis.labelTextFormat(x) for x in trend.xValueAxis.valueSteps]
    assert labels == ["2026-09-07"]
    assert _check_chart(trend) == [4]


def test_category_labels_never_overlap() -> None:
    font = _Styles().font
    for n in (1, 5, 12, 24, 48):
        codes = [f"ΜΑΘ{i:03d}-2026F" if i % 2 else f"MATH{i:03d}-2026F" for i in range(n)]
        slot = 380 / n
        labels, angle = _fit_labels(codes, slot, font, 7)
        assert len(labels) == n
        if angle == 0:  # side by side: each fits its slot
            assert all(stringWidth(x, font, 7) <= slot for x in labels)
        else:  # rotated: neighbours are slot * sin(angle) apart, more than a line
            assert slot * math.sin(math.radians(angle)) > 7, (n, angle)
            assert all(stringWidth(x, font, 7) <= 70 for x in labels)
        if n > 1 and angle:
            assert len(set(labels)) == n  # abbreviated, still told apart
            assert not any(x.endswith("-2026F") for x in labels)


def test_report_pages_for_people(school_url: str) -> None:
    """The pages a person looks at: five courses, no data, a semester in en and el."""
    from ferry.db.engine import make_engine

    save_pages(student_pdf(_five_courses()), "people-student-five-courses")
    empty = pb.StudentReport(
        student_id="S6", first_name="Ida", last_name="Jay", empty=True,
        note="No grades, attendance or performance recorded for any day.",
        grading_scale=scale_pb(ReportSettings()),
    )  # fmt: skip
    save_pages(student_pdf(empty), "people-student-no-data")
    db = make_engine(school_url)
    with db.connect() as conn:
        for lang in ("en", "el"):
            r = semester_report(conn, ReportSettings(), "2026-fall", lang)
            data = semester_pdf(r)
            save_pages(data, f"people-semester-{lang}")
            words = r.at_risk[0].reason_texts[0]
            assert words in " ".join(text(data).split()), words
    db.dispose()


def _placed(data: bytes) -> list[tuple[float, float, str]]:
    """(x, y, text) of every text the PDF's first page draws, as the extractor reads it."""
    import io

    from pypdf import PdfReader

    out: list[tuple[float, float, str]] = []

    def visit(t: str, cm: Any, tm: Any, *_: Any) -> None:
        if t.strip():
            x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            out.append((x, y, t.strip()))

    PdfReader(io.BytesIO(data)).pages[0].extract_text(visitor_text=visit)
    return out


def _under(placed: list[tuple[float, float, str]], title: str, w: float, h: float) -> list[str]:
    """The texts drawn in the box of `w` x `h` points below the chart title `title`."""
    x0, y0 = next((x, y) for x, y, t in placed if t == title)
    return [t for x, y, t in placed if x0 - 20 <= x <= x0 + w and y0 - h <= y < y0]


def _numbers(texts: list[str]) -> list[float]:
    out = []
    for t in texts:
        try:
            out.append(float(t))
        except ValueError:
            continue
    return out


def test_the_pdf_text_shows_every_chart_value_inside_its_axis() -> None:
    """Read back from the PDF as a text extractor sees it: each chart's axis labels (the
    numbers and dates drawn in its box) run from 0 to a top no lower than any value the
    chart shows, and the time axis' dates span the weeks it plots."""
    r = _five_courses()
    placed = _placed(student_pdf(r))
    results = _numbers(_under(placed, "Course results (%)", 360, 160))
    shown = [c.weighted_percent for c in r.courses] + [c.class_average for c in r.courses]
    assert min(results) == 0 and max(results) >= max(shown) and max(results) == 100
    attendance = _numbers(_under(placed, "Attendance (days)", 240, 110))
    assert min(attendance) == 0 and max(attendance) >= max(c.count for c in r.attendance.counts)
    perf_box = _under(placed, "Performance by week (steady)", 250, 130)
    perf = _numbers(perf_box)
    assert min(perf) == 0 and max(perf) >= max(w.average for w in r.performance.weekly)
    dates = sorted(dt.date.fromisoformat(t) for t in perf_box if t.count("-") == 2)
    weeks = [dt.date.fromisoformat(w.week) for w in r.performance.weekly]
    assert len(dates) >= 2 and dates[0] == weeks[0] and dates[-1] <= weeks[-1]
    assert len(set(dates)) == len(dates)  # never two labels of one date


def test_greek_pdfs_print_every_word_in_greek(school_url: str) -> None:
    """A report asked for in Greek prints its headings, labels, legend and chart titles in
    Greek: no printed word falls back to English (pages saved for people to read)."""
    from ferry.db.engine import make_engine

    r = _five_courses()
    r.language = "el"
    st = _Styles("el")
    student_story(r, st)
    assert st.w.missing == set()
    data = student_pdf(r)
    save_pages(data, "people-student-five-courses-el")
    t = text(data)
    for word in ["Αναφορά μαθητή", "Μέσος όρος τάξης", "Παρουσίες (ημέρες)", "Σελίδα 1"]:
        assert word in t, word
    db = make_engine(school_url)
    with db.connect() as conn:
        sem = semester_report(conn, ReportSettings(), "2026-fall", "el")
    db.dispose()
    st = _Styles("el")
    semester_story(sem, st)
    assert st.w.missing == set()
    data = semester_pdf(sem)
    save_pages(data, "people-semester-el-all-greek")
    assert "Μαθητές σε κίνδυνο (1)" in text(data)

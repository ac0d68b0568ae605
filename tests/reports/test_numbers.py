"""Report numbers against the hand-computed school of helpers.py, on both backends."""

from __future__ import annotations

import datetime as dt

import pytest

from ferry.errors import InvalidArgument, NotFound
from ferry.reports import compute
from ferry.reports.engine import ReportEngine
from ferry.reports.settings import ReportSettings
from ferry.reports.student import Scope, parse_scope


def test_student_report_by_hand(engine: ReportEngine) -> None:
    r, cached = engine.student("S1", Scope())
    assert not cached and not r.empty
    assert (r.first_name, r.last_name) == ("Ελένη", "Νικολάου")
    art, math = r.courses  # ordered by semester, then code
    # MATH: quiz 8/10 weight 1 (80%), exam 45/50 weight 3 (90%), the deleted quiz ignored:
    # (0.8*1 + 0.9*3) / 4 = 87.5% -> B (3.0 points)
    assert math.course_code == "MATH" and math.teacher == "Μαρία Παπαδοπούλου"
    assert [a.assessment for a in math.assessments] == ["Quiz", "Exam"]
    assert math.weighted_percent == 87.5 and math.letter == "B" and math.points == 3.0
    # Five graded students: (87.5 + 70 + 80 + 90 + 60) / 5 = 77.5
    assert math.has_class_average and math.class_average == 77.5 and math.class_size == 5
    # ART: 19/20 = 95% -> A; only two graded students: no class average
    assert art.weighted_percent == 95.0 and art.letter == "A"
    assert not art.has_class_average and art.class_average == 0 and art.class_size == 2
    # Attendance: 3 present + 1 late of 5 -> 80%
    counts = {c.status: c.count for c in math.attendance.counts}
    assert counts == {"present": 3, "late": 1, "absent": 1} and math.attendance.rate == 80.0
    # Performance 4, 3, 2 a week apart: average 3, slope -1/week, falling
    p = math.performance
    assert (p.average, p.trend_per_week, p.trend) == (3.0, -1.0, "falling")
    assert [(w.week, w.average) for w in p.weekly] == [
        ("2026-09-07", 4.0),
        ("2026-09-14", 3.0),
        ("2026-09-21", 2.0),
    ]
    # Overall, credit-weighted: (87.5*4 + 95*2) / 6 = 90; GPA (3*4 + 4*2) / 6 = 3.33
    assert r.overall_percent == 90.0 and r.gpa == 3.33
    assert (r.credits_attempted, r.credits_earned) == (6, 6)
    assert [h.title for h in r.highlights] == ["Science fair winner"]
    assert [b.letter for b in r.grading_scale] == ["A", "B", "C", "D", "F"]
    assert (r.first_day, r.last_day) == ("2026-09-07", "2026-09-22")


def test_date_range_keeps_only_what_falls_in_it(engine: ReportEngine) -> None:
    r, _ = engine.student("S1", parse_scope("", "2026-09-10", "2026-09-20"))
    # ART's project (09-15) and MATH's late/absent days (10, 11) and mark (14) are in range.
    assert [c.course_code for c in r.courses] == ["ART", "MATH"]
    art, math = r.courses
    assert not math.graded and math.assessments == []
    assert {c.status: c.count for c in math.attendance.counts} == {"late": 1, "absent": 1}
    assert math.attendance.rate == 50.0
    assert art.weighted_percent == 95.0
    assert r.overall_percent == 95.0 and r.credits_attempted == 2


def test_semester_scope_and_unknown_semester_is_an_empty_report(engine: ReportEngine) -> None:
    r, _ = engine.student("S1", Scope(semester="2026-fall"))
    assert len(r.courses) == 2
    empty, _ = engine.student("S1", Scope(semester="1999-fall"))
    assert empty.empty and "1999-fall" in empty.note and not empty.courses


def test_student_without_data_gets_an_empty_report(engine: ReportEngine) -> None:
    r, _ = engine.student("S6", Scope())
    assert r.empty and r.note.startswith("No grades") and r.gpa == 0


def test_unknown_student_is_not_found(engine: ReportEngine) -> None:
    with pytest.raises(NotFound, match="S404"):
        engine.student("S404", Scope())


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("2026-fall", "2026-09-01", ""), "semester"),
        (("", "2026-13-01", ""), "date_from"),
        (("", "2026-09-02", "2026-09-01"), "date_from"),
        (("", "", "yesterday"), "date_to"),
    ],
)
def test_bad_scope_names_the_field(args: tuple[str, str, str], field: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_scope(*args)
    assert e.value.field == field


def test_semester_report_by_hand(engine: ReportEngine) -> None:
    r, _ = engine.semester("2026-fall")
    art, math = r.courses
    assert (math.enrolled, math.graded, math.average) == (5, 5, 77.5)
    # 87.5 B, 70 C, 80 B, 90 A, 60 D
    assert {d.letter: d.count for d in math.distribution} == {
        "A": 1,
        "B": 2,
        "C": 1,
        "D": 1,
        "F": 0,
    }
    assert (art.enrolled, art.average) == (2, 72.5)  # (95 + 50) / 2
    assert math.attendance_rate == 80.0
    assert r.student_count == 5  # S6 is enrolled nowhere
    risk = {a.student_id: list(a.reasons) for a in r.at_risk}
    # S1: falling trend. S2: (70*4 + 50*2)/6 = 63.3 -> not low; S5: 60 is not below 60.
    assert risk == {"S1": ["falling_trend"]}
    assert [h.title for h in r.highlights] == ["Science fair winner"]
    with pytest.raises(NotFound):
        engine.semester("1999-fall")
    with pytest.raises(InvalidArgument):
        engine.semester(" ")


def test_arithmetic_edge_cases() -> None:
    s = ReportSettings()
    assert compute.weighted_percent([]) is None
    assert compute.weighted_percent([compute.Mark(5, 0, 1), compute.Mark(5, 10, 0)]) is None
    assert s.band(89.99).letter == "B" and s.band(90).letter == "A" and s.band(0).letter == "F"
    assert compute.attendance_rate({}, ["present"]) == 0.0
    d = dt.date(2026, 1, 5)
    assert compute.slope_per_week([(d, 1.0), (d, 3.0)]) is None
    assert compute.trend_label(0.05, s) == "steady"
    assert compute.trend_label(None, s) == "not_enough_data"
    with pytest.raises(ValueError, match="lowest band"):
        ReportSettings.model_validate(
            {"grading_scale": [{"letter": "P", "min_percent": 50, "points": 1}]}
        )


def test_search_students(engine: ReportEngine) -> None:
    assert [s.student_id for s in engine.search("s")] == ["S1", "S2", "S3", "S4", "S5", "S6"]
    assert [s.student_id for s in engine.search("ann b")] == ["S2"]
    assert [s.last_name for s in engine.search("Νικολ")] == ["Νικολάου"]
    assert [s.student_id for s in engine.search("S1")] == ["S1"]
    assert engine.search("100%") == []
    assert len(engine.search("S", 2)) == 2
    for bad, field in [("", "query"), ("x" * 101, "query")]:
        with pytest.raises(InvalidArgument) as e:
            engine.search(bad)
        assert e.value.field == field
    with pytest.raises(InvalidArgument):
        engine.search("S", 51)

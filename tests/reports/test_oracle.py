"""Every number of GetStudentReport and GetSemesterReport against the oracle (oracle.py:
plain SQL and arithmetic written apart from ferry.reports), over every student and every
semester of the small demo data plus the edge cases of edge.py, on both backends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from ferry.errors import NotFound
from ferry.reports.semester import semester_report
from ferry.reports.settings import ReportSettings
from ferry.reports.student import Scope, student_report
from ferry.v1 import reports_pb2 as pb
from tests.conftest import BACKENDS, fresh_database
from tests.reports.edge import EDGE, MOVED_TO, build_edges
from tests.reports.oracle import Oracle

SETTINGS = ReportSettings()


@pytest.fixture(scope="module", params=BACKENDS)
def school(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, Oracle]]:
    with fresh_database(str(request.param), tmp_path_factory.mktemp("oracle")) as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        seed(engine, Scale.SMALL, seed=7)
        build_edges(engine)
        with engine.connect() as conn:
            oracle = Oracle(conn)
        try:
            yield engine, oracle
        finally:
            engine.dispose()


def near(got: float, want: float | None, what: str) -> None:
    """Reports show two decimals; the oracle's exact value rounds to the same (a float
    sum in another order may differ in the last bit: 0.01 apart at most)."""
    assert want is not None, what
    assert abs(got - round(want, 2)) <= 0.0100001, f"{what}: report {got}, oracle {want}"


def check_performance(got: pb.PerformanceSummary, want: dict[str, Any], what: str) -> None:
    assert got.count == want["count"], what
    near(got.average, want["average"], what + " performance average")
    assert got.trend == want["trend"], what
    near(got.trend_per_week, want["slope"], what + " trend")
    weekly = [(w.week, w.count) for w in got.weekly]
    assert weekly == [(w, n) for w, _, n in want["weekly"]], what
    for w, (_, avg, _) in zip(got.weekly, want["weekly"], strict=True):
        near(w.average, avg, f"{what} week {w.week}")


def check_student(r: pb.StudentReport, want: dict[str, Any], what: str) -> None:
    assert [(c.course_code, c.semester) for c in r.courses] == [
        (c["code"], c["semester"]) for c in want["courses"]
    ], what
    for c, w in zip(r.courses, want["courses"], strict=True):
        where = f"{what} {c.course_code}"
        assert (c.letter, c.graded) == (w["letter"], w["graded"]), where
        assert c.withdrawn == (w["letter"] == "W"), where
        if w["graded"]:
            near(c.weighted_percent, w["percent"], where + " percent")
            assert c.points == w["points"], where
        assert c.class_size == w["class_size"], where
        assert c.has_class_average == (w["class_average"] is not None), where
        if w["class_average"] is not None:
            near(c.class_average, w["class_average"], where + " class average")
        assert {x.status: x.count for x in c.attendance.counts} == w["attendance"], where
        assert c.attendance.total == sum(w["attendance"].values()), where
        near(c.attendance.rate, w["attendance_rate"], where + " attendance")
        check_performance(c.performance, w["performance"], where)
    if want["overall"] is None:
        assert (r.overall_percent, r.gpa) == (0, 0), what
    else:
        near(r.overall_percent, want["overall"], what + " overall")
        near(r.gpa, want["gpa"], what + " gpa")
    assert (r.credits_attempted, r.credits_earned) == (want["attempted"], want["earned"]), what
    assert {x.status: x.count for x in r.attendance.counts} == want["attendance"], what
    near(r.attendance.rate, want["attendance_rate"], what + " attendance")
    check_performance(r.performance, want["performance"], what)
    assert sorted(h.title for h in r.highlights) == want["highlights"], what
    assert (r.first_day, r.last_day) == (want["first_day"], want["last_day"]), what
    assert r.empty == want["empty"], what
    # Every section is there, even empty (the page reads them all).
    assert r.HasField("attendance") and r.HasField("performance"), what
    assert all(c.HasField("attendance") and c.HasField("performance") for c in r.courses)


def test_every_student_report_equals_the_oracle(school: tuple[Engine, Oracle]) -> None:
    engine, oracle = school
    checked = 0
    with engine.connect() as conn:
        for sid in sorted(oracle.live_students):
            check_student(student_report(conn, SETTINGS, sid, Scope()), oracle.student(sid), sid)
            checked += 1
        # Semester scopes: every student of every semester.
        for sem in sorted(oracle.semesters):
            sids = {e.student_id for e in oracle.enrolments.values() if e.semester == sem}
            for sid in sorted(sids):
                r = student_report(conn, SETTINGS, sid, Scope(semester=sem))
                check_student(r, oracle.student(sid, sem), f"{sid} {sem}")
                checked += 1
        with pytest.raises(NotFound):  # E05 is soft-deleted
            student_report(conn, SETTINGS, "E05", Scope())
    assert checked > 350


RANGES = [
    (dt.date(2026, 9, 1), dt.date(2026, 9, 30)),
    (dt.date(2025, 10, 1), dt.date(2026, 3, 31)),
    (dt.date(2027, 2, 5), dt.date(2027, 2, 12)),
    (None, dt.date(2026, 1, 1)),
    (dt.date(2026, 11, 15), None),
]


def test_every_date_range_report_equals_the_oracle(school: tuple[Engine, Oracle]) -> None:
    """Date ranges: only grades, days and marks in the range count (class averages too),
    only courses with something in it are shown."""
    engine, everything = school
    with engine.connect() as conn:
        for lo, hi in RANGES:
            oracle = Oracle(conn, lo, hi)
            scope = Scope(date_from=lo, date_to=hi)
            shown = 0
            for sid in sorted(everything.live_students):
                r = student_report(conn, SETTINGS, sid, scope)
                check_student(r, oracle.student(sid), f"{sid} {lo}..{hi}")
                shown += len(r.courses)
            assert shown > 0, (lo, hi)


def check_semester(r: pb.SemesterReport, want: dict[str, Any], sem: str) -> None:
    """Every number of semester report `r` against the oracle's `want`."""
    got_courses = {c.course_code: c for c in r.courses}
    assert set(got_courses) >= set(want["courses"]), sem
    for code, c in got_courses.items():
        w = want["courses"].get(code)
        if w is None:  # a live course without a live enrolment
            assert (c.enrolled, c.withdrawn, c.graded) == (0, 0, 0), (sem, code)
            continue
        where = f"{sem} {code}"
        assert (c.enrolled, c.withdrawn, c.graded) == (
            w["enrolled"],
            w["withdrawn"],
            w["graded"],
        ), where
        near(c.average, w["average"], where + " average")
        assert {d.letter: d.count for d in c.distribution if d.count} == w["distribution"], where
        near(c.attendance_rate, w["attendance_rate"], where + " attendance")
        assert c.attendance_days == w["attendance_days"], where
    assert r.student_count == want["student_count"], sem
    near(r.average, want["average"], sem + " average")
    near(r.attendance_rate, want["attendance_rate"], sem + " attendance")
    assert {d.letter: d.count for d in r.distribution if d.count} == want["distribution"], sem
    # The top highlights: live ones of live students only, as many as there are up to
    # the limit.
    shown = {(h.student_id, h.title) for h in r.highlights}
    assert shown <= want["highlights"], sem
    assert len(r.highlights) == min(SETTINGS.highlights_limit, len(want["highlights"]))
    got_risk = {a.student_id: a for a in r.at_risk}
    assert set(got_risk) == set(want["at_risk"]), sem
    for sid, a in got_risk.items():
        w = want["at_risk"][sid]
        assert list(a.reasons) == w["reasons"], (sem, sid)
        assert len(a.reason_texts) == len(a.reasons), (sem, sid)
        near(a.attendance_rate, w["rate"], f"{sem} {sid} attendance")
        near(a.trend_per_week, w["slope"], f"{sem} {sid} trend")
        if w["overall"] is not None:
            near(a.overall_percent, w["overall"], f"{sem} {sid} overall")


def test_every_semester_report_equals_the_oracle(school: tuple[Engine, Oracle]) -> None:
    engine, oracle = school
    assert {EDGE, MOVED_TO} <= set(oracle.semesters)
    with engine.connect() as conn:
        for sem in sorted(oracle.semesters):
            check_semester(semester_report(conn, SETTINGS, sem), oracle.semester(sem), sem)


def test_the_edge_cases_are_what_they_claim(school: tuple[Engine, Oracle]) -> None:
    """The oracle's edge cases hold the cases the issue names (so the comparison above
    covers them), read off the reports themselves."""
    engine, _ = school
    with engine.connect() as conn:
        e01 = student_report(conn, SETTINGS, "E01", Scope(semester=EDGE))
        e02 = student_report(conn, SETTINGS, "E02", Scope(semester=EDGE))
        e04 = student_report(conn, SETTINGS, "E04", Scope(semester=EDGE))
        sem = semester_report(conn, SETTINGS, EDGE)
        el = semester_report(conn, SETTINGS, EDGE, "el")
        moved = semester_report(conn, SETTINGS, MOVED_TO)
    courses = {c.course_code: c for c in e01.courses}
    # A deleted fifth student never lifts a class of 4 over the privacy threshold.
    assert courses["K4"].class_size == 4 and not courses["K4"].has_class_average
    assert courses["K6"].class_size == 5 and courses["K6"].has_class_average
    # The soft-deleted course is nowhere; the dropped one is W and out of the GPA.
    assert "KD" not in courses and "KD" not in {c.course_code for c in sem.courses}
    assert courses["KW"].letter == "W" and not courses["KW"].graded
    assert e01.credits_attempted == courses["K4"].credits + courses["K6"].credits
    assert "Withdrawn" in e01.policy
    # Two marks three days apart are not a trend, nor three marks in two weeks.
    assert e02.performance.trend == "not_enough_data" and e02.performance.trend_per_week == 0
    assert e04.performance.trend == "not_enough_data"
    risk = {a.student_id: a for a in sem.at_risk}
    assert "E02" not in risk or "falling_trend" not in risk["E02"].reasons
    assert "falling_trend" in risk["E03"].reasons
    assert "E05" not in risk  # soft-deleted
    assert "attendance 70% < 80%" in risk["E01"].reason_texts
    assert "παρουσίες 70% < 80%" in {a.student_id: a for a in el.at_risk}["E01"].reason_texts
    k4 = {c.course_code: c for c in sem.courses}["K4"]
    assert (k4.enrolled, k4.graded) == (4, 4)
    assert "KM" in {c.course_code for c in moved.courses}
    assert "KM" not in {c.course_code for c in sem.courses}
    assert "Edge award of a deleted student" not in {h.title for h in sem.highlights}


def test_an_empty_report_carries_every_section(school: tuple[Engine, Oracle]) -> None:
    from ferry.reports.render import to_dict

    engine, _ = school
    with engine.connect() as conn:
        r = student_report(conn, SETTINGS, "E10", Scope())
    assert r.empty and r.note
    d = to_dict(r)
    for key in ("courses", "highlights", "attendance", "performance", "grading_scale"):
        assert key in d, key
    assert d["attendance"]["counts"] == [] and d["performance"]["weekly"] == []
    assert d["performance"]["trend"] == "not_enough_data"

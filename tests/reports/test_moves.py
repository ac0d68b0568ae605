"""Versions bumped from both sides: a change bumps what its rows were before and after. A
course moved to another semester by a courses csv leaves the old semester's cached report
at once, and its undo brings it back at once; so does every report of its students."""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.db.models import Course
from ferry.errors import NotFound
from ferry.merge import undo_import
from ferry.reports.engine import ReportEngine
from ferry.reports.semester import semester_report
from ferry.reports.student import Scope, student_report
from tests.merge.helpers import bundle, records, run
from tests.reports.helpers import SEM

NEW = "2027-spring"


def _add_course(url: str) -> Engine:
    db = make_engine(url)
    with db.begin() as conn:
        conn.execute(
            sa.insert(Course).values(
                course_code="BIO", semester=NEW, title="Biology", credits=3, teacher="Kim Lee"
            )
        )
    return db


def _records(db: Engine, semester: str) -> dict[str, list[dict[str, Any]]]:
    """The semester's records; none when it has no course left."""
    try:
        return records(bundle(db, semester))
    except NotFound:
        return {}


def _course_record(db: Engine, code: str, semester: str = SEM) -> dict[str, Any]:
    return next(c for c in records(bundle(db, semester))["courses"] if c["course_code"] == code)


def _codes(engine: ReportEngine, semester: str) -> tuple[list[str], bool]:
    r, cached = engine.semester(semester)
    return [c.course_code for c in r.courses], cached


def _student_codes(engine: ReportEngine, sid: str, semester: str) -> list[str]:
    r, _ = engine.student(sid, Scope(semester=semester))
    return [c.course_code for c in r.courses]


def test_a_moved_course_leaves_the_old_semester_and_its_undo_brings_it_back(
    engine: ReportEngine, school_url: str
) -> None:
    db = _add_course(school_url)
    try:
        assert _codes(engine, SEM) == (["ART", "MATH"], False)
        assert _codes(engine, SEM) == (["ART", "MATH"], True)
        assert _codes(engine, NEW) == (["BIO"], False)
        assert _codes(engine, NEW) == (["BIO"], True)
        for sem in (SEM, NEW):  # cache S1's and S2's (ART's students) semester reports
            for sid in ("S1", "S2"):
                _student_codes(engine, sid, sem)
        art = {**_course_record(db, "ART"), "semester": NEW}
        outcome = run(db, [Batch("courses", [art])], entity="courses", strategy="update")
        assert outcome.status.value == "completed"
        assert _codes(engine, SEM) == (["MATH"], False)  # not the cached ART, MATH
        assert _codes(engine, NEW) == (["ART", "BIO"], False)
        assert _student_codes(engine, "S1", SEM) == ["MATH"]
        assert _student_codes(engine, "S1", NEW) == ["ART"]
        assert _student_codes(engine, "S2", SEM) == ["MATH"]
        assert _codes(engine, SEM) == (["MATH"], True)  # cached again
        undo_import(db, SCHOOL, outcome.id)
        assert _codes(engine, SEM) == (["ART", "MATH"], False)
        assert _codes(engine, NEW) == (["BIO"], False)
        assert _student_codes(engine, "S1", SEM) == ["ART", "MATH"]
        assert _student_codes(engine, "S1", NEW) == []
    finally:
        db.dispose()


def test_random_imports_moves_and_undos_never_leave_a_stale_report(
    engine: ReportEngine, school_url: str
) -> None:
    """Random sequences of course moves, grade changes and undos, with every report read
    (and so cached) between steps: after each step every report the engine serves equals
    one computed afresh from the database."""
    rng = random.Random(22)
    db = _add_course(school_url)
    semesters = [SEM, NEW]
    students = [f"S{i}" for i in range(1, 7)]
    done: list[str] = []  # completed imports, newest last

    def fresh_equal() -> None:
        with db.connect() as conn:
            for sem in semesters:
                try:
                    want = semester_report(conn, engine.settings, sem)
                except NotFound:  # a semester left without courses: NOT_FOUND both ways
                    with pytest.raises(NotFound):
                        engine.semester(sem)
                    continue
                assert engine.semester(sem)[0] == want, sem
            for sid in students:
                for scope in (Scope(), Scope(semester=SEM), Scope(semester=NEW)):
                    want_s = student_report(conn, engine.settings, sid, scope)
                    assert engine.student(sid, scope)[0] == want_s, (sid, scope)

    try:
        fresh_equal()
        for _ in range(8):
            step = rng.choice(["move", "move", "grade", "undo"])
            if step == "undo" and done:
                undo_import(db, SCHOOL, done.pop(), force=True)
            elif step in ("move", "undo"):
                code = rng.choice(["ART", "MATH", "BIO"])
                rec = next(
                    c
                    for sem in semesters
                    for c in _records(db, sem).get("courses", [])
                    if c["course_code"] == code
                )
                target = NEW if rec["semester"] == SEM else SEM
                out = run(
                    db,
                    [Batch("courses", [{**rec, "semester": target}])],
                    entity="courses",
                    strategy="update",
                )
                assert out.status.value == "completed"
                done.append(out.id)
            else:
                sem = rng.choice(semesters)
                grades = _records(db, sem).get("grades", [])
                if not grades:
                    continue
                g = rng.choice(grades)
                out = run(
                    db,
                    [Batch("grades", [{**g, "score": float(rng.randrange(0, 11))}])],
                    entity="grades",
                    strategy="update",
                )
                assert out.status.value == "completed"
                done.append(out.id)
            fresh_equal()
    finally:
        db.dispose()


def test_restoring_a_backup_moves_the_course_back_at_once(
    engine: ReportEngine, school_url: str
) -> None:
    """A backup restore is an import with replace of the backup's bundle: the course it
    moves back leaves the newer semester's cached report and joins the older one's."""
    db = _add_course(school_url)
    try:
        backup = bundle(db, SEM)  # what a backup of the semester holds
        art = {**_course_record(db, "ART"), "semester": NEW}
        run(db, [Batch("courses", [art])], entity="courses", strategy="update")
        assert _codes(engine, SEM)[0] == ["MATH"]
        assert _codes(engine, NEW) == (["ART", "BIO"], False)
        assert _codes(engine, NEW) == (["ART", "BIO"], True)
        assert _student_codes(engine, "S2", NEW) == ["ART"]
        restored = run(db, backup, strategy="replace")
        assert restored.status.value == "completed"
        assert _codes(engine, NEW) == (["BIO"], False)
        assert _codes(engine, SEM) == (["ART", "MATH"], False)
        assert _student_codes(engine, "S2", NEW) == []
    finally:
        db.dispose()

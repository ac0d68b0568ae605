"""A renamed key leaves the cache at once (issue 29's renames meet issue 22's versions). A
student's report is cached under its id; a rename changes the id, so the rename must bump
the OLD id as well as the new one, and its undo both again. Before this, the report of a
student renamed S1 -> S1X was still served, from the cache, under S1."""

from __future__ import annotations

import pytest

from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.errors import NotFound
from ferry.merge import undo_import
from ferry.merge.renames import rename_key
from ferry.reports.engine import ReportEngine
from ferry.reports.student import Scope
from tests.reports.helpers import SEM

SCOPE = Scope(semester=SEM)


def _codes(engine: ReportEngine, sid: str) -> list[str]:
    report, _ = engine.student(sid, SCOPE)
    return sorted(c.course_code for c in report.courses)


def test_a_renamed_student_is_not_served_under_the_old_id_and_undo_brings_it_back(
    engine: ReportEngine, school_url: str
) -> None:
    db = make_engine(school_url)
    try:
        before = engine.student("S1", SCOPE)[0]
        assert engine.student("S1", SCOPE)[1]  # cached under S1
        renamed = rename_key(db, SCHOOL, "students", "S1", "S1X", requested_by="t")
        assert renamed.status.value == "completed"
        with pytest.raises(NotFound):
            engine.student("S1", SCOPE)
        after, cached = engine.student("S1X", SCOPE)
        assert not cached
        assert after.student_id == "S1X"
        assert [c.course_code for c in after.courses] == [c.course_code for c in before.courses]
        undo_import(db, SCHOOL, renamed.id, requested_by="t")
        with pytest.raises(NotFound):
            engine.student("S1X", SCOPE)
        back, cached = engine.student("S1", SCOPE)
        assert not cached and back.student_id == "S1"
    finally:
        db.dispose()


def test_a_renamed_course_is_not_served_under_the_old_code(
    engine: ReportEngine, school_url: str
) -> None:
    db = make_engine(school_url)
    try:
        assert _codes(engine, "S1") == ["ART", "MATH"]
        semester = sorted(c.course_code for c in engine.semester(SEM)[0].courses)
        assert semester == ["ART", "MATH"]
        renamed = rename_key(db, SCHOOL, "courses", "ART", "ART2", requested_by="t")
        assert renamed.status.value == "completed"
        assert _codes(engine, "S1") == ["ART2", "MATH"]
        assert sorted(c.course_code for c in engine.semester(SEM)[0].courses) == ["ART2", "MATH"]
        undo_import(db, SCHOOL, renamed.id, requested_by="t")
        assert _codes(engine, "S1") == ["ART", "MATH"]
    finally:
        db.dispose()

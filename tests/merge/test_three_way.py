"""Local edits kept (three-way): with keep_local_edits a field changed only here survives an
update import, one changed only at the source is updated, one changed on both sides
follows the conflict policy."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event
from ferry.datasets.school import SCHOOL
from ferry.merge import Status, undo_import
from tests.merge.helpers import execute, rebuild, records, run, scalar

THREE = {"keep_local_edits": True}


def _live_course(events: list[Event]) -> dict[str, Any]:
    return next(c for c in records(events)["courses"] if c["deleted_at"] is None)


def _edit_here(target: Engine, code: str, **values: Any) -> None:
    """A person's edit: the values and a later updated_at."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    sets = ", ".join(f"{k} = :{k}" for k in values)
    execute(
        target,
        f"UPDATE courses SET {sets}, updated_at = :t WHERE course_code = :c",
        t=later if target.dialect.name != "sqlite" else later.strftime("%Y-%m-%d %H:%M:%S.%f"),
        c=code,
        **values,
    )


def _at_source(events: list[Event], code: str, **values: Any) -> list[Event]:
    by = copy.deepcopy(records(events))
    next(c for c in by["courses"] if c["course_code"] == code).update(values)
    return rebuild(by)


def _course(target: Engine, code: str, field: str) -> Any:
    return scalar(target, f"SELECT {field} FROM courses WHERE course_code = :c", c=code)


def test_a_teachers_local_fix_to_a_course_title_survives_an_update_import(
    events: list[Event], target: Engine
) -> None:
    run(target, events, **THREE)
    course = _live_course(events)
    code = course["course_code"]
    _edit_here(target, code, title="Fixed by the teacher")
    changed = _at_source(events, code, credits=course["credits"] + 1, teacher="Someone Else")
    preview = run(target, changed, dry_run=True, **THREE)
    done = run(target, changed, **THREE)
    assert done.status is Status.COMPLETED
    assert _course(target, code, "title") == "Fixed by the teacher"
    assert float(_course(target, code, "credits")) == course["credits"] + 1
    assert _course(target, code, "teacher") == "Someone Else"
    summary = next(s for s in done.summaries if s.entity == "courses")
    assert (summary.updated, summary.kept_local, summary.conflicts) == (1, 1, 0)
    # The preview shows the kept edit apart from the update, with both values.
    kept = [c for c in preview.sample_changes if c.action == "keep_local"]
    assert [(c.natural_key, c.changes) for c in kept] == [
        (code, [("title", "Fixed by the teacher", course["title"])])
    ]
    # The next import of the same bundle writes nothing and keeps the fix again.
    again = run(target, changed, **THREE)
    summary = next(s for s in again.summaries if s.entity == "courses")
    assert (summary.updated, summary.kept_local) == (0, 1)
    assert _course(target, code, "title") == "Fixed by the teacher"


def test_a_local_edit_alone_is_no_write(events: list[Event], target: Engine) -> None:
    run(target, events, **THREE)
    code = _live_course(events)["course_code"]
    _edit_here(target, code, title="Fixed here")
    done = run(target, events, **THREE)
    summary = next(s for s in done.summaries if s.entity == "courses")
    assert (summary.updated, summary.kept_local) == (0, 1)
    assert _course(target, code, "title") == "Fixed here"


@pytest.mark.parametrize(
    ("policy", "expected", "conflicts"),
    [(None, "At the source", 1), ("local", "Here", 1), ("review", "Here", 1)],
)
def test_a_field_changed_on_both_sides_follows_the_conflict_policy(
    events: list[Event], target: Engine, policy: str | None, expected: str, conflicts: int
) -> None:
    run(target, events, **THREE)
    code = _live_course(events)["course_code"]
    _edit_here(target, code, title="Here")
    changed = _at_source(events, code, title="At the source")
    rules = () if policy is None else (("courses.title", policy),)
    done = run(target, changed, conflicts=rules, **THREE)
    assert _course(target, code, "title") == expected
    summary = next(s for s in done.summaries if s.entity == "courses")
    assert summary.conflicts == conflicts
    listed = [c for c in done.sample_changes if c.action == "conflict"]
    assert [(c.natural_key, c.changes) for c in listed] == [
        (code, [("title", "Here", "At the source")])
    ]


def test_without_keep_local_edits_the_source_wins_as_before(
    events: list[Event], target: Engine
) -> None:
    run(target, events, **THREE)
    course = _live_course(events)
    code = course["course_code"]
    _edit_here(target, code, title="Fixed here")
    run(target, _at_source(events, code, credits=course["credits"] + 1))
    assert _course(target, code, "title") == course["title"]


def test_a_local_edit_saves_the_base_once_and_undo_gives_back_the_bases(
    events: list[Event], target: Engine
) -> None:
    run(target, events, **THREE)
    assert not scalar(target, "SELECT count(*) FROM import_bases")  # an import writes none
    course = _live_course(events)
    code = course["course_code"]
    _edit_here(target, code, title="Fixed here")
    _edit_here(target, code, teacher="Someone Here")
    # One base: the row as the import left it, saved by the first local edit.
    assert scalar(target, "SELECT count(*) FROM import_bases") == 1
    changed = _at_source(events, code, credits=course["credits"] + 1)
    done = run(target, changed, **THREE)
    assert _course(target, code, "title") == "Fixed here"
    undo_import(target, SCHOOL, done.id)
    assert _course(target, code, "title") == "Fixed here"
    assert float(_course(target, code, "credits")) == course["credits"]
    # The base is the first import's again: the same import keeps the fix once more.
    again = run(target, changed, **THREE)
    summary = next(s for s in again.summaries if s.entity == "courses")
    assert (summary.updated, summary.kept_local) == (1, 1)
    assert _course(target, code, "title") == "Fixed here"
    assert _course(target, code, "teacher") == "Someone Here"


def test_a_two_way_import_drops_the_bases_of_what_it_wrote(
    events: list[Event], target: Engine
) -> None:
    run(target, events)
    course = _live_course(events)
    _edit_here(target, course["course_code"], title="Fixed here")
    assert scalar(target, "SELECT count(*) FROM import_bases") == 1
    run(target, events)  # source wins, the row equals the source again
    assert not scalar(target, "SELECT count(*) FROM import_bases")
    assert _course(target, course["course_code"], "title") == course["title"]

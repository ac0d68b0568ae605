"""Dry runs change nothing and report what the real run does; undo restores every table."""

from __future__ import annotations

import copy

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event
from ferry.datasets.school import SCHOOL
from ferry.errors import FailedPrecondition, NotFound
from ferry.merge import Status, get_import, undo_import
from tests.merge.helpers import checksum, counts, execute, rebuild, records, run, scalar


def _changed_bundle(events: list[Event]) -> list[Event]:
    """The bundle with some records changed and some dropped (for replace)."""
    by = copy.deepcopy(records(events))
    for r in by["grades"][:4]:
        r["score"] = r["score"] + 0.5
    by["courses"][1]["title"] = "Renamed"
    by["students"][2]["mentor_student_id"] = by["students"][0]["student_id"]
    # Drop three attendance rows that are live in the scope (replace soft-deletes those).
    live_courses = {c["course_code"] for c in by["courses"] if c["deleted_at"] is None}
    live_students = {st["student_id"] for st in by["students"] if st["deleted_at"] is None}
    live = {
        (e["student_id"], e["course_code"])
        for e in by["enrollments"]
        if e["deleted_at"] is None
        and e["student_id"] in live_students
        and e["course_code"] in live_courses
    }
    drop = [
        i
        for i, a in enumerate(by["attendance"])
        if a["deleted_at"] is None and (a["student_id"], a["course_code"]) in live
    ][:3]
    by["attendance"] = [a for i, a in enumerate(by["attendance"]) if i not in drop]
    by["highlights"].pop()
    return rebuild(by)


@pytest.mark.parametrize("strategy", ["update", "skip", "update_only", "replace"])
def test_dry_run_changes_nothing_and_reports_what_the_real_run_does(
    events: list[Event], target: Engine, strategy: str
) -> None:
    run(target, events)
    changed = _changed_bundle(events)
    before = checksum(target)
    preview = run(target, changed, strategy=strategy, dry_run=True)
    assert preview.status is Status.DRY_RUN
    assert checksum(target) == before
    real = run(target, changed, strategy=strategy)
    assert real.status is Status.COMPLETED
    assert counts(preview) == counts(real)
    if strategy != "skip":
        updates = {(c.entity, c.action) for c in preview.sample_changes}
        assert ("grades", "update") in updates
        title = next(c for c in preview.sample_changes if c.entity == "courses")
        assert next(f for f in title.changes if f[0] == "title")[2] == "Renamed"
    if strategy == "replace":
        assert ("attendance", "delete") in {(c.entity, c.action) for c in preview.sample_changes}


def test_dry_run_into_an_empty_database_samples_the_creates(
    events: list[Event], target: Engine
) -> None:
    preview = run(target, events, dry_run=True)
    assert preview.status is Status.DRY_RUN
    assert all(set(c) == {"created"} for c in counts(preview).values())
    assert len([c for c in preview.sample_changes if c.entity == "grades"]) == 20
    assert scalar(target, "SELECT count(*) FROM grades") == 0
    assert get_import(target, preview.id).status is Status.DRY_RUN


@pytest.mark.parametrize("strategy", ["update", "skip", "replace"])
def test_undo_restores_every_table(events: list[Event], target: Engine, strategy: str) -> None:
    first = run(target, events)
    execute(target, "DELETE FROM grades WHERE id IN (SELECT id FROM grades ORDER BY id LIMIT 2)")
    before = checksum(target)
    second = run(target, _changed_bundle(events), strategy=strategy)
    assert second.status is Status.COMPLETED
    assert checksum(target) != before
    undone = undo_import(target, SCHOOL, second.id)
    assert undone.status is Status.UNDONE and undone.undone_at is not None
    assert checksum(target) == before
    assert get_import(target, second.id).status is Status.UNDONE
    with pytest.raises(FailedPrecondition, match="already undone"):
        undo_import(target, SCHOOL, second.id)
    # The first import (everything created) can be undone down to an empty database.
    undo_import(target, SCHOOL, first.id, force=True)
    assert all(
        scalar(target, f"SELECT count(*) FROM {e.table.name}") == 0 for e in SCHOOL.in_order()
    )


def test_undo_refuses_when_a_touched_record_changed_since_unless_forced(
    events: list[Event], target: Engine
) -> None:
    run(target, events)
    before = checksum(target)
    outcome = run(target, _changed_bundle(events))
    course = records(events)["courses"][1]["course_code"]
    execute(
        target,
        "UPDATE courses SET teacher = 'Someone else', updated_at = :t WHERE course_code = :c",
        t="2030-01-01 00:00:00.000000",
        c=course,
    )
    with pytest.raises(FailedPrecondition, match=f"courses {course}"):
        undo_import(target, SCHOOL, outcome.id)
    assert get_import(target, outcome.id).status is Status.COMPLETED
    undo_import(target, SCHOOL, outcome.id, force=True)
    assert checksum(target) == before


def test_undo_of_unknown_failed_or_dry_run_imports_is_refused(
    events: list[Event], target: Engine
) -> None:
    with pytest.raises(NotFound):
        undo_import(target, SCHOOL, "00000000-0000-0000-0000-000000000000")
    preview = run(target, events, dry_run=True)
    with pytest.raises(FailedPrecondition, match="dry run"):
        undo_import(target, SCHOOL, preview.id)

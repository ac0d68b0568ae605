"""Links to records of other semesters wait in pending_links until their target arrives
(issue 10): whatever order the semesters come in, every link ends up as it was."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch
from ferry.datasets.school import SCHOOL
from ferry.merge import Status, get_import, undo_import
from tests.merge.helpers import bundle, checksum, comparable, records, run, scalar

SEMESTERS = ["2025-fall", "2026-spring", "2026-fall"]


def _linked(engine: Engine) -> tuple[int, int]:
    return (
        scalar(engine, "SELECT count(*) FROM courses WHERE prerequisite_id IS NOT NULL"),
        scalar(engine, "SELECT count(*) FROM students WHERE mentor_id IS NOT NULL"),
    )


def _cross_semester_links(source: Engine) -> None:
    """The demo data must hold links that cross semesters, or the test proves nothing."""
    with source.connect() as conn:
        crossing = conn.execute(
            sa.text(
                "SELECT count(*) FROM courses c JOIN courses p ON p.id = c.prerequisite_id "
                "WHERE p.semester <> c.semester"
            )
        ).scalar_one()
    assert crossing > 0


@pytest.mark.parametrize("order", list(itertools.permutations(SEMESTERS)), ids="-".join)
def test_every_order_of_semesters_re_exports_identical(
    source: Engine, target: Engine, order: tuple[str, ...]
) -> None:
    _cross_semester_links(source)
    bundles = {s: bundle(source, s) for s in SEMESTERS}
    for semester in order:
        outcome = run(target, bundles[semester])
        assert outcome.status is Status.COMPLETED, outcome.errors[:3]
    # A link to a record that is in no semester's bundle (a mentor enrolled in nothing)
    # cannot be completed by semester bundles: it stays pending, and only those do; the
    # exports still write it, as the target's key (issue 21: links travel on).
    present = {
        (name, tuple(r[k] for k in SCHOOL.entity(name).natural_key))
        for b in bundles.values()
        for name, recs in records(b).items()
        for r in recs
    }
    nowhere: set[tuple[str, str]] = set()

    def unreachable(name: str, r: dict[str, object]) -> None:
        for field, parent in (("prerequisite_code", "courses"), ("mentor_student_id", "students")):
            value = r.get(field)
            if value is not None and (parent, (value,)) not in present:
                nowhere.add((name, str(value)))

    for semester in SEMESTERS:
        assert comparable(bundle(target, semester)) == comparable(bundles[semester], unreachable), (
            semester
        )
    with target.connect() as conn:
        still = conn.execute(
            sa.text("SELECT entity, target_key FROM pending_links WHERE closed_by IS NULL")
        ).all()
    assert {tuple(r) for r in still} == nowhere
    # Every course is in some semester: every prerequisite link is there.
    assert _linked(target)[0] == _linked(source)[0]


def test_a_link_to_another_semester_waits_is_reported_and_bound_later(
    source: Engine, target: Engine
) -> None:
    _cross_semester_links(source)
    fall = bundle(source, "2026-fall")
    first = run(target, fall)
    warned = {w.kind: w for w in first.warnings}
    assert "pending_links" in warned, first.warnings
    waiting = [w for w in first.warnings if w.kind == "pending_links"]
    total = sum(w.count for w in waiting)
    assert total > 0
    courses = next(w for w in waiting if w.entity == "courses")
    assert "not yet in this database" in courses.message
    assert courses.sample and "->" in courses.sample[0]
    assert get_import(target, first.id).warnings == first.warnings  # GetImport shows them
    # A dry run of the earlier semester reports the links it would complete.
    spring = bundle(source, "2026-spring")
    preview = run(target, spring, dry_run=True)
    assert any(w.kind == "links_bound" for w in preview.warnings), preview.warnings
    before_spring = checksum(target)
    second = run(target, spring)
    bound = [w for w in second.warnings if w.kind == "links_bound"]
    assert bound, second.warnings
    # Undoing the import that brought the targets re-opens the links exactly.
    undo_import(target, SCHOOL, second.id)
    assert checksum(target) == before_spring
    with target.connect() as conn:
        reopened = conn.execute(
            sa.text("SELECT count(*) FROM pending_links WHERE closed_by IS NULL")
        ).scalar_one()
    assert reopened >= sum(w.count for w in bound)


def test_a_csv_import_of_the_target_binds_the_link(source: Engine, target: Engine) -> None:
    fall = bundle(source, "2026-fall")
    run(target, fall)
    by = records(fall)
    waiting_codes = {
        c["prerequisite_code"]
        for c in by["courses"]
        if c.get("prerequisite_code")
        and c["prerequisite_code"] not in {x["course_code"] for x in by["courses"]}
    }
    assert waiting_codes
    other = [
        c
        for s in ("2026-spring", "2025-fall")
        for c in records(bundle(source, s))["courses"]
        if c["course_code"] in waiting_codes
    ]
    rows = [dict(c, prerequisite_code=None) for c in other]
    outcome = run(target, [Batch("courses", rows)], entity="courses")
    assert outcome.status is Status.COMPLETED, outcome.errors[:3]
    assert any(w.kind == "links_bound" for w in outcome.warnings), outcome.warnings
    with target.connect() as conn:
        unbound = conn.execute(
            sa.text(
                "SELECT count(*) FROM pending_links WHERE closed_by IS NULL "
                "AND entity = 'courses' AND target_key IN :codes"
            ).bindparams(sa.bindparam("codes", expanding=True)),
            {"codes": sorted(waiting_codes)},
        ).scalar_one()
    assert unbound == 0

"""Plans are binding: an import with a dry run's plan_digest applies exactly that plan or
nothing, naming what changed since; change limits stop mass changes."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event
from ferry.datasets.school import SCHOOL
from ferry.errors import FailedPrecondition, InvalidArgument
from ferry.merge import Status, undo_import
from ferry.merge.model import ChangeLimit
from tests.merge.helpers import checksum, counts, execute, rebuild, records, run, scalar


def _changed(events: list[Event]) -> list[Event]:
    by = copy.deepcopy(records(events))
    by["courses"][0]["title"] = "Changed at the source"
    for g in by["grades"][:3]:
        g["score"] = g["score"] + 1
    return rebuild(by)


def test_an_import_with_the_previews_digest_applies_that_plan(
    events: list[Event], target: Engine
) -> None:
    run(target, events)
    changed = _changed(events)
    preview = run(target, changed, dry_run=True)
    assert preview.status is Status.DRY_RUN
    assert len(preview.plan_digest) == 64
    # The same preview again gives the same digest: it depends on data, not on the run.
    assert run(target, changed, dry_run=True).plan_digest == preview.plan_digest
    real = run(target, changed, plan_digest=preview.plan_digest)
    assert real.status is Status.COMPLETED
    assert counts(real) == counts(preview)
    assert real.plan_digest == preview.plan_digest


def test_data_changed_between_preview_and_import_is_refused_naming_the_change(
    events: list[Event], target: Engine
) -> None:
    run(target, events)
    changed = _changed(events)
    preview = run(target, changed, dry_run=True)
    # A person edits a course the plan reads (a later updated_at, as every edit does).
    code = records(events)["courses"][1]["course_code"]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    execute(
        target,
        "UPDATE courses SET title = 'Edited here', updated_at = :t WHERE course_code = :c",
        t=later if target.dialect.name != "sqlite" else later.strftime("%Y-%m-%d %H:%M:%S.%f"),
        c=code,
    )
    before = checksum(target)
    with pytest.raises(FailedPrecondition) as e:
        run(target, changed, plan_digest=preview.plan_digest)
    assert "courses" in e.value.message and code in e.value.message
    assert preview.id in e.value.message
    assert e.value.field == "options.plan_digest"
    assert checksum(target) == before  # nothing written


def test_another_import_between_preview_and_import_is_named(
    events: list[Event], target: Engine
) -> None:
    run(target, events)
    changed = _changed(events)
    preview = run(target, changed, dry_run=True)
    by = copy.deepcopy(records(events))
    by["grades"][0]["score"] = by["grades"][0]["score"] + 7
    between = run(target, rebuild(by))
    assert between.status is Status.COMPLETED
    before = checksum(target)
    with pytest.raises(FailedPrecondition) as e:
        run(target, changed, plan_digest=preview.plan_digest)
    assert between.id in e.value.message and "grades" in e.value.message
    assert checksum(target) == before
    # Undoing the import in between makes the data what the preview read... but the
    # undo itself is named if it is what changed.
    undo_import(target, SCHOOL, between.id)
    real = run(target, changed, plan_digest=preview.plan_digest)
    assert real.status is Status.COMPLETED


def test_a_different_file_or_strategy_than_the_previews_is_refused(
    events: list[Event], target: Engine
) -> None:
    run(target, events)
    changed = _changed(events)
    preview = run(target, changed, dry_run=True, sha="sha-a")
    before = checksum(target)
    with pytest.raises(FailedPrecondition, match="not the one previewed"):
        run(target, changed, plan_digest=preview.plan_digest, sha="sha-b")
    with pytest.raises(FailedPrecondition):
        run(target, changed, plan_digest=preview.plan_digest, sha="sha-a", strategy="replace")
    assert checksum(target) == before


def test_an_unknown_or_malformed_digest_is_refused(events: list[Event], target: Engine) -> None:
    before = checksum(target)
    with pytest.raises(FailedPrecondition, match="no preview has plan digest"):
        run(target, events, plan_digest="a" * 64)
    with pytest.raises(FailedPrecondition, match="64 hex digits"):
        run(target, events, plan_digest="'; DROP TABLE imports; --")
    assert checksum(target) == before


def _without_enrollments(events: list[Event], share: float) -> tuple[list[Event], int, int]:
    """The bundle without `share` of its live enrolments (and their grades, attendance
    and performance); returns it, how many were dropped and how many were live."""
    by = copy.deepcopy(records(events))
    courses = {c["course_code"] for c in by["courses"] if c["deleted_at"] is None}
    students = {s["student_id"] for s in by["students"] if s["deleted_at"] is None}
    live = [
        e
        for e in by["enrollments"]
        if e["deleted_at"] is None and e["course_code"] in courses and e["student_id"] in students
    ]
    dropped = {(e["student_id"], e["course_code"]) for e in live[: int(len(live) * share)]}
    for name in ("enrollments", "grades", "attendance", "daily_performance"):
        by[name] = [r for r in by[name] if (r["student_id"], r["course_code"]) not in dropped]
    return rebuild(by), len(dropped), len(live)


def test_a_replace_removing_40_percent_of_enrolments_is_refused_under_a_10_percent_limit(
    events: list[Event], target: Engine
) -> None:
    run(target, events)
    live_before = scalar(
        target,
        "SELECT count(*) FROM enrollments e JOIN courses c ON c.id = e.course_ref "
        "JOIN students s ON s.id = e.student_ref WHERE e.deleted_at IS NULL "
        "AND c.deleted_at IS NULL AND s.deleted_at IS NULL AND c.semester = '2026-fall'",
    )
    smaller, dropped, _ = _without_enrollments(events, 0.4)
    limit = (ChangeLimit("enrollments", "delete", 10.0),)
    before = checksum(target)
    with pytest.raises(FailedPrecondition) as e:
        run(target, smaller, strategy="replace", change_limits=limit, backup_before=False)
    text = e.value.message
    assert "enrollments" in text and "10%" in text and "2026-fall" in text
    allowed = int(live_before * 0.1)
    assert f"would soft-delete {dropped}" in text
    assert f"{dropped - allowed} over the limit" in text
    assert checksum(target) == before
    # A dry run reports against the limit and does not fail.
    preview = run(target, smaller, strategy="replace", dry_run=True, change_limits=limit)
    assert preview.status is Status.DRY_RUN
    (check,) = preview.limits
    assert check.exceeded and check.count == dropped and check.base == live_before
    # allow_mass_change (an admin's) lets it through.
    done = run(
        target,
        smaller,
        strategy="replace",
        change_limits=limit,
        allow_mass_change=True,
        backup_before=False,
    )
    assert done.status is Status.COMPLETED
    assert counts(done)["enrollments"]["deleted"] == dropped


def test_a_change_within_the_limit_goes_through(events: list[Event], target: Engine) -> None:
    run(target, events)
    smaller, dropped, _ = _without_enrollments(events, 0.05)
    limit = (ChangeLimit("enrollments", "delete", 10.0),)
    done = run(target, smaller, strategy="replace", change_limits=limit, backup_before=False)
    assert done.status is Status.COMPLETED
    assert not done.limits[0].exceeded and done.limits[0].count == dropped


def test_a_limit_naming_an_unknown_entity_is_refused(events: list[Event], target: Engine) -> None:
    with pytest.raises(InvalidArgument, match="unknown entity 'pupils'"):
        run(target, events, change_limits=(ChangeLimit("pupils", "delete", 10.0),))

"""Each strategy against a database where some records exist, some differ, some are missing."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event
from ferry.merge import Status
from tests.merge.helpers import SEMESTER, counts, execute, records, run, scalar


def _prepare(target: Engine, events: list[Event]) -> None:
    """Import the bundle, then: 3 grades differ, 2 attendance rows are missing, and one
    grade in the semester's scope is not in the bundle."""
    assert run(target, events).status is Status.COMPLETED
    execute(
        target,
        "UPDATE grades SET score = score + 1 "
        "WHERE id IN (SELECT id FROM grades ORDER BY id LIMIT 3)",
    )
    execute(
        target,
        "DELETE FROM attendance WHERE id IN (SELECT id FROM attendance ORDER BY id DESC LIMIT 2)",
    )
    enrollment = scalar(
        target,
        "SELECT e.id FROM enrollments e JOIN courses c ON c.id = e.course_ref "
        "JOIN students st ON st.id = e.student_ref "
        "WHERE c.semester = :s AND e.deleted_at IS NULL AND c.deleted_at IS NULL "
        "AND st.deleted_at IS NULL "
        "ORDER BY e.id LIMIT 1",
        s=SEMESTER,
    )
    execute(
        target,
        "INSERT INTO grades (enrollment_ref, assessment, score, max_score, weight, created_at, "
        "updated_at) VALUES (:e, 'extra credit', 1, 10, 1, :t, :t)",
        e=enrollment,
        t="2026-11-01 00:00:00.000000",
    )


@pytest.mark.parametrize(
    ("strategy", "grades", "attendance"),
    [
        ("update", {"updated": 3, "unchanged": -3}, {"created": 2, "unchanged": -2}),
        ("skip", {"skipped": 0}, {"created": 2, "skipped": -2}),
        ("update_only", {"updated": 3, "unchanged": -3}, {"unmatched": 2, "unchanged": -2}),
        (
            "replace",
            {"updated": 3, "unchanged": -3, "deleted": 1},
            {"created": 2, "unchanged": -2},
        ),
    ],
)
def test_strategy_counts_exactly_what_it_does(
    events: list[Event],
    target: Engine,
    strategy: str,
    grades: dict[str, int],
    attendance: dict[str, int],
) -> None:
    _prepare(target, events)
    sizes = {k: len(v) for k, v in records(events).items()}
    outcome = run(target, events, strategy=strategy)
    assert outcome.status is Status.COMPLETED, outcome.errors
    got = counts(outcome)

    def expected(entity: str, spec: dict[str, int]) -> dict[str, int]:
        # Negative and zero numbers are relative to the entity's size in the bundle.
        return {
            k: v
            if v > 0 and k in ("updated", "created", "deleted", "unmatched")
            else sizes[entity] + v
            for k, v in spec.items()
        }

    assert got["grades"] == expected("grades", grades)
    assert got["attendance"] == expected("attendance", attendance)
    untouched = "skipped" if strategy == "skip" else "unchanged"
    for entity in ("courses", "students", "enrollments", "highlights", "daily_performance"):
        assert got[entity] == {untouched: sizes[entity]}, entity
    extra = scalar(target, "SELECT deleted_at FROM grades WHERE assessment = 'extra credit'")
    assert (extra is not None) == (strategy == "replace")
    if strategy != "skip":  # the three edited grades are the bundle's again
        again = counts(run(target, events, strategy="update_only"))
        assert again["grades"] == {"unchanged": sizes["grades"]}


def test_skip_strategy_leaves_existing_rows_untouched(events: list[Event], target: Engine) -> None:
    _prepare(target, events)
    before = scalar(target, "SELECT sum(score) FROM grades")
    run(target, events, strategy="skip")
    assert scalar(target, "SELECT sum(score) FROM grades") == before


def test_update_only_creates_nothing(events: list[Event], target: Engine) -> None:
    outcome = run(target, events, strategy="update_only")
    assert outcome.status is Status.COMPLETED
    for entity, c in counts(outcome).items():
        assert set(c) == {"unmatched"}, entity
    assert scalar(target, "SELECT count(*) FROM courses") == 0

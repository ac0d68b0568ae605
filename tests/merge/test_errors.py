"""Invalid records: each a RecordError naming entity, key and field; abort changes
nothing; skip_invalid commits the rest and keeps the rejected records."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch, Event, Header, Trailer
from ferry.datasets.school import SCHOOL
from ferry.errors import FailedPrecondition, InvalidArgument
from ferry.merge import RecordError, Status, rejected_events
from tests.merge.helpers import checksum, counts, edited, rebuild, records, run, scalar


def _only(outcome: Any) -> RecordError:
    """The one invalid record; the others listed are its children, rejected with it."""
    assert outcome.status is Status.FAILED
    assert outcome.total_errors == sum(s.errors for s in outcome.summaries)
    error: RecordError = outcome.errors[0]
    assert all("was rejected" in e.reason for e in outcome.errors[1:]), outcome.errors
    return error


BAD_VALUES: list[tuple[str, str, Any, str]] = [
    ("grades", "score", "lots", "not a number"),
    ("grades", "score", float("nan"), "not a finite number"),
    ("attendance", "date", "2026-02-30", "not a date"),
    ("attendance", "date", "20261001", "not a date"),
    ("students", "year_level", "ten", "not an integer"),
    ("students", "year_level", 2**40, "out of range"),
    ("courses", "title", None, "required field is missing"),
    ("courses", "title", "X" * 201, "longer than 200"),
    ("enrollments", "status", 7, "expected text"),
    ("students", "date_of_birth", "1/2/2010", "not a date"),
    ("highlights", "updated_at", "soon", "not a timestamp"),
]


def test_a_bad_value_is_an_error_naming_entity_key_and_field(
    events: list[Event], target: Engine
) -> None:
    before = checksum(target)
    for entity, field, value, reason in BAD_VALUES:
        bad = edited(events, entity, 1, **{field: value})
        error = _only(run(target, bad))
        rec = records(bad)[entity][1]
        key = "/".join(str(rec[k]) for k in SCHOOL.entity(entity).natural_key)
        case = (entity, field, value)
        assert (error.entity, error.natural_key, error.field, error.position) == (
            entity,
            key,
            field,
            2,
        ), case
        assert reason in error.reason, case
        assert checksum(target) == before, case


def test_duplicate_natural_keys_are_errors(events: list[Event], target: Engine) -> None:
    by = copy.deepcopy(records(events))
    by["grades"].append(dict(by["grades"][0], score=1.0))
    outcome = run(target, rebuild(by))
    assert outcome.status is Status.FAILED
    assert outcome.total_errors == 2
    assert {(e.entity, e.field, e.position) for e in outcome.errors} == {
        ("grades", "student_id,course_code,assessment", 1),
        ("grades", "student_id,course_code,assessment", len(by["grades"])),
    }
    assert "duplicate natural key" in outcome.errors[0].reason


def test_a_parent_that_exists_nowhere_is_an_error(events: list[Event], target: Engine) -> None:
    bad = edited(events, "enrollments", 0, course_code="NOPE-101")
    outcome = run(target, bad)
    assert outcome.status is Status.FAILED
    first = outcome.errors[0]
    assert (first.entity, first.field) == ("enrollments", "course_code")
    assert "NOPE-101" in first.reason and first.natural_key.endswith("/NOPE-101")
    # Its grades, attendance and marks have no enrollment either: errors too, all counted.
    assert outcome.total_errors == sum(s.errors for s in outcome.summaries) > 1


def test_failure_at_a_random_record_leaves_every_table_unchanged(
    events: list[Event], target: Engine
) -> None:
    run(target, events)
    before = checksum(target)
    by = copy.deepcopy(records(events))
    rng = random.Random(4)
    entity = rng.choice(sorted(by))
    rec = rng.choice(by[entity])
    rec["created_at"] = "yesterday"
    for r in by["grades"][:5]:
        r["score"] = r["score"] + 1  # changes that must not be applied either
    outcome = run(target, rebuild(by))
    assert outcome.status is Status.FAILED and outcome.total_errors == 1
    assert outcome.errors[0].field == "created_at"
    assert checksum(target) == before
    assert (
        scalar(target, "SELECT count(*) FROM import_changes WHERE import_id = :i", i=outcome.id)
        == 0
    )


def _key(entity: str, rec: dict[str, Any]) -> tuple[str, ...]:
    return (entity, *(str(rec[k]) for k in SCHOOL.entity(entity).natural_key))


def test_skip_invalid_commits_the_rest_and_keeps_exactly_the_rejected(
    events: list[Event], target: Engine
) -> None:
    by = copy.deepcopy(records(events))
    by["grades"][3]["score"] = "bad"
    by["attendance"][5]["course_code"] = "NOPE-101"
    by["courses"][0]["credits"] = "x"  # rejects the course, and with it its children
    course = by["courses"][0]["course_code"]
    expected = {_key("grades", by["grades"][3]), _key("attendance", by["attendance"][5])}
    expected.add(_key("courses", by["courses"][0]))
    for entity in ("enrollments", "grades", "attendance", "daily_performance"):
        expected |= {_key(entity, r) for r in by[entity] if r["course_code"] == course}

    outcome = run(target, rebuild(by), on_error="skip_invalid")
    assert outcome.status is Status.COMPLETED
    assert outcome.has_rejected_file
    assert outcome.total_errors == len(expected)
    rejected = list(rejected_events(target, SCHOOL, outcome.id))
    assert isinstance(rejected[0], Header) and isinstance(rejected[-1], Trailer)
    got = [_key(b.entity, r) for b in rejected if isinstance(b, Batch) for r in b.records]
    assert sorted(got) == sorted(expected)
    assert scalar(target, "SELECT count(*) FROM courses WHERE course_code = :c", c=course) == 0
    total = sum(len(v) for v in by.values())
    assert sum(s.created for s in outcome.summaries) == total - len(expected)
    # The rejected file is a bundle again: fixed, it imports.
    fixed = records(rejected)
    fixed["courses"][0]["credits"] = 3
    fixed["grades"] = [dict(r, score=1.0) if r["score"] == "bad" else r for r in fixed["grades"]]
    fixed["attendance"] = [r for r in fixed["attendance"] if r["course_code"] != "NOPE-101"]
    again = run(target, rebuild(fixed))
    assert again.status is Status.COMPLETED, again.errors
    assert sum(s.created for s in again.summaries) == len(expected) - 1


def test_rejected_events_of_an_import_without_rejects_is_failed_precondition(
    events: list[Event], target: Engine
) -> None:
    outcome = run(target, events)
    with pytest.raises(FailedPrecondition):
        list(rejected_events(target, SCHOOL, outcome.id))


def test_unknown_field_or_entity_is_invalid_argument(events: list[Event], target: Engine) -> None:
    with pytest.raises(InvalidArgument, match="nickname"):
        run(target, edited(events, "students", 0, nickname="Bo"))
    with pytest.raises(InvalidArgument, match="teachers"):
        run(target, [Batch("teachers", [{"name": "x"}])])
    assert scalar(target, "SELECT count(*) FROM students") == 0


def test_replace_without_a_semester_is_invalid_argument(target: Engine) -> None:
    with pytest.raises(InvalidArgument, match="replace needs a semester scope"):
        run(target, [Batch("courses", [])], strategy="replace", entity="courses")


def test_csv_strings_are_parsed_for_one_entity_imports(events: list[Event], target: Engine) -> None:
    rows = [
        {
            "student_id": "S9",
            "first_name": "Ada",
            "last_name": "L",
            "email": "a@x",
            "date_of_birth": "2010-05-01",
            "year_level": " 7",
            "status": "active",
            "mentor_student_id": "",
        },
        {
            "student_id": "S10",
            "first_name": "B",
            "last_name": "C",
            "email": "",
            "date_of_birth": "",
            "year_level": "x",
            "status": "active",
        },
    ]
    outcome = run(target, [Batch("students", rows)], entity="students")
    assert outcome.status is Status.FAILED
    assert [(e.natural_key, e.field, e.position) for e in outcome.errors] == [
        ("S10", "year_level", 2)
    ]
    rows[1]["year_level"] = "8"
    outcome = run(target, [Batch("students", rows)], entity="students")
    assert counts(outcome) == {"students": {"created": 2}}
    assert scalar(target, "SELECT year_level FROM students WHERE student_id = 'S9'") == 7


def test_one_entity_import_of_children_resolves_parents_in_the_database(
    events: list[Event], target: Engine
) -> None:
    run(target, events)
    rows = [dict(r, status="dropped") for r in records(events)["enrollments"][:3]]
    rows.append(dict(rows[0], student_id="S-NEW"))
    outcome = run(
        target, [Batch("enrollments", rows)], entity="enrollments", strategy="update_only"
    )
    assert outcome.status is Status.FAILED
    assert [(e.natural_key, e.field) for e in outcome.errors] == [
        (f"S-NEW/{rows[0]['course_code']}", "student_id")
    ]
    outcome = run(
        target, [Batch("enrollments", rows[:3])], entity="enrollments", strategy="update_only"
    )
    assert counts(outcome) == {"enrollments": {"updated": 3}}

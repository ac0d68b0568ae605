"""What the demo seed generates: table layouts, sizes and semester calendars."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

Row = tuple[object, ...]
_TS = ("created_at", "updated_at", "deleted_at")
# Write order: every table comes after the tables it references.
COLUMNS: dict[str, tuple[str, ...]] = {
    "courses": (
        "id",
        "course_code",
        "semester",
        "title",
        "description",
        "credits",
        "teacher",
        "status",
        "prerequisite_id",
        *_TS,
    ),
    "students": (
        "id",
        "student_id",
        "first_name",
        "last_name",
        "email",
        "date_of_birth",
        "year_level",
        "status",
        "mentor_id",
        *_TS,
    ),
    "enrollments": (
        "id",
        "student_ref",
        "course_ref",
        "enrolled_on",
        "status",
        "final_score",
        *_TS,
    ),
    "grades": (
        "id",
        "enrollment_ref",
        "assessment",
        "score",
        "max_score",
        "weight",
        "graded_on",
        "comment",
        *_TS,
    ),
    "attendance": ("id", "enrollment_ref", "date", "status", "note", *_TS),
    "daily_performance": ("id", "enrollment_ref", "date", "category", "score", "note", *_TS),
    "highlights": ("id", "student_ref", "semester", "title", "description", "kind", *_TS),
}
ENROLLMENT_TABLES = ("enrollments", "grades", "attendance", "daily_performance")

_SEMESTER = re.compile(r"(\d{4})-(spring|fall)")


@dataclass(frozen=True)
class Plan:
    """How much to generate: the semesters (oldest first) and the sizes per semester."""

    semesters: tuple[str, ...]
    students: int
    courses_per_semester: int
    students_per_semester: int
    courses_per_student: int
    highlights_per_semester: int
    assessments: int = 3
    lesson_days: int = 5


@dataclass(frozen=True)
class Formats:
    """How a backend wants timestamps (given aware UTC) and dates written."""

    ts: Callable[[dt.datetime], object]
    day: Callable[[dt.date], object]


def parse_semester(name: str) -> tuple[int, bool]:
    """(year, is_fall) of a semester name like "2026-fall"; ValueError when malformed."""
    match = _SEMESTER.fullmatch(name)
    if match is None:
        raise ValueError(f"semester {name!r} is not like '2026-fall' or '2026-spring'")
    return int(match.group(1)), match.group(2) == "fall"


def semester_chain(last: str, count: int) -> tuple[str, ...]:
    """`count` consecutive semesters ending with `last`, oldest first."""
    year, fall = parse_semester(last)
    chain = []
    for _ in range(count):
        chain.append(f"{year}-{'fall' if fall else 'spring'}")
        year, fall = (year, False) if fall else (year - 1, True)
    return tuple(reversed(chain))


def semester_dates(name: str) -> tuple[dt.date, dt.date]:
    """First and last teaching day of a semester."""
    year, fall = parse_semester(name)
    if fall:
        return dt.date(year, 9, 7), dt.date(year, 12, 18)
    return dt.date(year, 2, 2), dt.date(year, 6, 12)

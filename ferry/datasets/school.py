"""The built-in school dataset (see DESIGN.md): entities, natural keys, links and scope.

The semester scope: the semester's courses, their enrollments, the students enrolled, the
grades/attendance/daily performance of those enrollments, and those students' highlights
in the semester. Students are shared between semesters: a semester `replace` soft-deletes
the semester's courses, enrollments, grades, attendance, daily performance and
highlights that the bundle lacks, never a student (who loses only the semester's
enrollments).
"""

from __future__ import annotations

from ferry.datasets.spec import Dataset, Entity, Field, Kind, Reference, Scope
from ferry.db import models as m
from ferry.v1 import bundle_pb2 as pb

TIMESTAMPS = (
    Field("created_at", Kind.TIMESTAMP),
    Field("updated_at", Kind.TIMESTAMP),
    Field("deleted_at", Kind.TIMESTAMP, nullable=True),
)
# Marks, scores and weights: finite and small enough that no sum over a school's records
# (a semester report) can overflow; dates default to ferry.datasets.spec.DATE_RANGE.
SCORES = (-1_000_000.0, 1_000_000.0)
ENROLLMENT = Reference(("student_id", "course_code"), "enrollments", "enrollment_ref")

SCHOOL = Dataset.of(
    "school",
    scope_name="semester",
    entities=[
        Entity(
            "courses",
            m.Course,
            pb.Course,
            natural_key=("course_code",),
            fields=(
                Field("course_code"),
                Field("semester"),
                Field("title"),
                Field("description"),
                Field("credits", Kind.INT, bounds=(0, 1000)),
                Field("teacher"),
                Field("status"),
                *TIMESTAMPS,
            ),
            references=(
                Reference(("prerequisite_code",), "courses", "prerequisite_id", nullable=True),
            ),
            scope=(Scope(column="semester"),),
        ),
        Entity(
            "students",
            m.Student,
            pb.Student,
            natural_key=("student_id",),
            fields=(
                Field("student_id"),
                Field("first_name"),
                Field("last_name"),
                Field("email"),
                Field("date_of_birth", Kind.DATE, nullable=True),
                Field("year_level", Kind.INT, bounds=(0, 100)),
                Field("status"),
                *TIMESTAMPS,
            ),
            references=(Reference(("mentor_student_id",), "students", "mentor_id", nullable=True),),
            scope=(Scope(via_child=("enrollments", "student_ref")),),
            shared=True,  # enrolled in many semesters: a semester replace never deletes one
        ),
        Entity(
            "enrollments",
            m.Enrollment,
            pb.Enrollment,
            natural_key=("student_id", "course_code"),
            fields=(
                Field("enrolled_on", Kind.DATE, nullable=True),
                Field("status"),
                Field("final_score", Kind.FLOAT, nullable=True, bounds=SCORES),
                *TIMESTAMPS,
            ),
            references=(
                Reference(("student_id",), "students", "student_ref"),
                Reference(("course_code",), "courses", "course_ref"),
            ),
            scope=(Scope(via_parent="course_ref"),),
        ),
        Entity(
            "grades",
            m.Grade,
            pb.Grade,
            natural_key=("student_id", "course_code", "assessment"),
            fields=(
                Field("assessment"),
                Field("score", Kind.FLOAT, bounds=SCORES),
                Field("max_score", Kind.FLOAT, bounds=(0, SCORES[1])),
                Field("weight", Kind.FLOAT, bounds=(0, SCORES[1])),
                Field("graded_on", Kind.DATE, nullable=True),
                Field("comment", nullable=True),
                *TIMESTAMPS,
            ),
            references=(ENROLLMENT,),
            scope=(Scope(via_parent="enrollment_ref"),),
        ),
        Entity(
            "attendance",
            m.Attendance,
            pb.Attendance,
            natural_key=("student_id", "course_code", "date"),
            fields=(
                Field("date", Kind.DATE),
                Field("status"),
                Field("note", nullable=True),
                *TIMESTAMPS,
            ),
            references=(ENROLLMENT,),
            scope=(Scope(via_parent="enrollment_ref"),),
        ),
        Entity(
            "daily_performance",
            m.DailyPerformance,
            pb.DailyPerformance,
            natural_key=("student_id", "course_code", "date", "category"),
            fields=(
                Field("date", Kind.DATE),
                Field("category"),
                Field("score", Kind.FLOAT, bounds=SCORES),
                Field("note", nullable=True),
                *TIMESTAMPS,
            ),
            references=(ENROLLMENT,),
            scope=(Scope(via_parent="enrollment_ref"),),
        ),
        Entity(
            "highlights",
            m.Highlight,
            pb.Highlight,
            natural_key=("student_id", "semester", "title"),
            fields=(
                Field("semester"),
                Field("title"),
                Field("description"),
                Field("kind"),
                *TIMESTAMPS,
            ),
            references=(Reference(("student_id",), "students", "student_ref"),),
            scope=(Scope(column="semester"), Scope(via_parent="student_ref")),
        ),
    ],
)

"""SQLAlchemy 2.0 models of the built-in school dataset.

Every table has a surrogate `id` for joins and a natural key (a unique constraint) that
bundles use instead; `created_at`/`updated_at` are kept by the database layer and
`deleted_at` marks a soft delete.

No foreign key cascades a delete (migration 0005): deleting a row that others need fails
(ON DELETE RESTRICT), so nothing, not even a bug, removes records silently. Optional
self-links (prerequisite, mentor) are cleared when their target goes (SET NULL).
"""

from __future__ import annotations

import datetime as dt
from typing import overload

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ferry.db.tenant import school_id

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    """The current instant, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


@overload
def aware(value: dt.datetime) -> dt.datetime: ...
@overload
def aware(value: None) -> None: ...
@overload
def aware(value: dt.datetime | None) -> dt.datetime | None: ...
def aware(value: dt.datetime | None) -> dt.datetime | None:
    """`value` as aware UTC (SQLite hands back naive UTC datetimes)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Timestamps:
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class School(Base):
    """A tenant (docs/tenants.md): every row of a tenant table belongs to one school."""

    __tablename__ = "schools"
    __table_args__ = (UniqueConstraint("code"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # What people, tokens (`sch`) and commands name it by: [a-z0-9-], at most 64.
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    # en | el, or "" for the installation's default (notify.default_language).
    language: Mapped[str] = mapped_column(String(8), default="", server_default="")
    # An IANA zone name ("Europe/Athens"), "" for UTC.
    time_zone: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # The mail address its mails come from, "" for the installation's sender.
    sender: Mapped[str] = mapped_column(String(254), default="", server_default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Tenant:
    """A tenant table's `school_id`: filled from the acting school (ferry.db.tenant) by
    the ORM and Core inserts, and by the database's default for raw SQL (on PostgreSQL
    the transaction's `ferry.school`); row-level security compares it (migration 0013)."""

    school_id: Mapped[int] = mapped_column(
        Id, ForeignKey("schools.id", ondelete="RESTRICT"), default=school_id
    )


class Course(Tenant, Timestamps, Base):
    __tablename__ = "courses"
    __table_args__ = (UniqueConstraint("school_id", "course_code"), Index(None, "semester"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    course_code: Mapped[str] = mapped_column(String(64))
    semester: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    credits: Mapped[int] = mapped_column(Integer, default=0)
    teacher: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default="active")
    prerequisite_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("courses.id", ondelete="SET NULL")
    )


class Student(Tenant, Timestamps, Base):
    __tablename__ = "students"
    __table_args__ = (
        UniqueConstraint("school_id", "student_id"),
        # The soft-deleted students alone (migration 0018): a class average leaves out the
        # enrolments of deleted students by an anti-join on this small index instead of
        # reading every student of the school (ferry.reports.student.class_averages).
        Index(
            "ix_students_deleted",
            "id",
            postgresql_where=text("deleted_at IS NOT NULL"),
            sqlite_where=text("deleted_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    student_id: Mapped[str] = mapped_column(String(64))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254), default="")
    date_of_birth: Mapped[dt.date | None] = mapped_column(Date)
    year_level: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    mentor_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("students.id", ondelete="SET NULL")
    )


class Enrollment(Tenant, Timestamps, Base):
    __tablename__ = "enrollments"
    __table_args__ = (UniqueConstraint("student_ref", "course_ref"), Index(None, "course_ref"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    student_ref: Mapped[int] = mapped_column(Id, ForeignKey("students.id", ondelete="RESTRICT"))
    course_ref: Mapped[int] = mapped_column(Id, ForeignKey("courses.id", ondelete="RESTRICT"))
    enrolled_on: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="enrolled")
    final_score: Mapped[float | None] = mapped_column(Float)


class Grade(Tenant, Timestamps, Base):
    __tablename__ = "grades"
    __table_args__ = (UniqueConstraint("enrollment_ref", "assessment"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    enrollment_ref: Mapped[int] = mapped_column(
        Id, ForeignKey("enrollments.id", ondelete="RESTRICT")
    )
    assessment: Mapped[str] = mapped_column(String(100))
    score: Mapped[float] = mapped_column(Float)
    max_score: Mapped[float] = mapped_column(Float, default=100.0)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    graded_on: Mapped[dt.date | None] = mapped_column(Date)
    comment: Mapped[str | None] = mapped_column(Text)


class Attendance(Tenant, Timestamps, Base):
    __tablename__ = "attendance"
    __table_args__ = (UniqueConstraint("enrollment_ref", "date"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    enrollment_ref: Mapped[int] = mapped_column(
        Id, ForeignKey("enrollments.id", ondelete="RESTRICT")
    )
    date: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)


class DailyPerformance(Tenant, Timestamps, Base):
    __tablename__ = "daily_performance"
    __table_args__ = (UniqueConstraint("enrollment_ref", "date", "category"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    enrollment_ref: Mapped[int] = mapped_column(
        Id, ForeignKey("enrollments.id", ondelete="RESTRICT")
    )
    date: Mapped[dt.date] = mapped_column(Date)
    category: Mapped[str] = mapped_column(String(32))
    score: Mapped[float] = mapped_column(Float)
    note: Mapped[str | None] = mapped_column(Text)


class Highlight(Tenant, Timestamps, Base):
    __tablename__ = "highlights"
    __table_args__ = (UniqueConstraint("student_ref", "semester", "title"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    student_ref: Mapped[int] = mapped_column(Id, ForeignKey("students.id", ondelete="RESTRICT"))
    semester: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(32), default="note")

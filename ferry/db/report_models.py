"""The report cache's data versions: counters bumped in the same transaction as every
import and undo that changes what a report shows (see ferry.reports.versions)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ferry.db.models import Base
from ferry.db.tenant import school_id

Id = BigInteger().with_variant(Integer(), "sqlite")


class ReportVersion(Base):
    __tablename__ = "report_versions"

    # Per school (docs/tenants.md): a school's imports bump only its own versions.
    school_id: Mapped[int] = mapped_column(
        Id, ForeignKey("schools.id", ondelete="RESTRICT"), primary_key=True, default=school_id
    )
    # student (key: student_id) | semester (key: the semester) | generation (key: "")
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Id, default=0)


class ReportListener(Base):
    """A reports process that keeps data versions in memory (ferry.reports.versions
    Listener): its lease, renewed by itself, and the last change it has applied. A
    committed import waits, before it returns, until every row whose lease is live has
    seen its change. Infrastructure, not school data: one row per process, whatever the
    schools it serves (no school_id, no row-level security; docs/tenants.md)."""

    __tablename__ = "report_listeners"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    # Set by the database's clock (now() + lease_seconds), never the process's.
    lease_until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    lease_seconds: Mapped[float] = mapped_column(Float)
    # The last value of the sequence report_change_seq whose notification it has applied.
    seen_seq: Mapped[int] = mapped_column(Id)

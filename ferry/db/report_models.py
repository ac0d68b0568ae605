"""The report cache's data versions: counters bumped in the same transaction as every
import and undo that changes what a report shows (see ferry.reports.versions)."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, String
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

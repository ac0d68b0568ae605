"""The report cache's data versions: counters bumped in the same transaction as every
import and undo that changes what a report shows (see ferry.reports.versions)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ferry.db.models import Base

Id = BigInteger().with_variant(Integer(), "sqlite")


class ReportVersion(Base):
    __tablename__ = "report_versions"

    # student (key: student_id) | semester (key: the semester) | generation (key: "")
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Id, default=0)

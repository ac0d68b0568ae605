"""Records per scope value (semester), kept with the data: every import, undo and restore
rewrites the rows of the semesters it touched in its own transaction (see
ferry.bundle.semesters), so ListSemesters reads its exact counts instead of counting."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ferry.db.models import Base, Id
from ferry.db.tenant import school_id

Count = BigInteger().with_variant(Integer(), "sqlite")


class ScopeCount(Base):
    __tablename__ = "scope_counts"

    school_id: Mapped[int] = mapped_column(
        Id, ForeignKey("schools.id", ondelete="RESTRICT"), primary_key=True, default=school_id
    )
    dataset: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(200), primary_key=True)  # e.g. "2026-fall"
    entity: Mapped[str] = mapped_column(String(64), primary_key=True)
    records: Mapped[int] = mapped_column(Count)

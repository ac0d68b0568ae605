"""The export service's tables: entity export jobs.

A job row is the queue entry, the progress record and the history at once, so every
replica of the export service sees the same jobs and stats come from one table.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ferry.db.models import Base, Tenant, utcnow

PENDING = "pending"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = (COMPLETED, FAILED, CANCELLED)


class ExportJob(Tenant, Base):
    __tablename__ = "export_jobs"
    __table_args__ = (
        UniqueConstraint("school_id", "idempotency_key"),
        Index(None, "status", "created_at"),
        Index(None, "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    export_type: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64), default="school")
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    # "limit" is an SQL keyword; the proto calls it limit.
    row_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    include_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # en | el, or "" for none: headers, file name and mail in that language.
    language: Mapped[str] = mapped_column(String(8), default="", server_default="")
    notify: Mapped[list[str]] = mapped_column(JSON, default=list)
    # NULL when the caller gave none (NULLs never collide in a unique constraint).
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    progress_percent: Mapped[int] = mapped_column(Integer, default=0)
    total_records: Mapped[int] = mapped_column(BigInteger, default=0)
    processed_records: Mapped[int] = mapped_column(BigInteger, default=0)
    file_size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    records_per_second: Mapped[float] = mapped_column(Float, default=0.0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    # Why it failed as a machine reason and its values (ferry.errors.REASONS), for a page
    # to word in its language; error_message is the English of it.
    error_reason: Mapped[str] = mapped_column(String(64), default="", server_default="")
    error_metadata: Mapped[dict[str, str] | None] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    filename: Mapped[str] = mapped_column(String(255), default="")
    storage_key: Mapped[str] = mapped_column(String(255), default="")
    worker_id: Mapped[str] = mapped_column(String(200), default="")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The notification that announced how the job ended ("" until one is queued).
    notification_id: Mapped[str] = mapped_column(String(36), default="", server_default="")

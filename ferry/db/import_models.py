"""Tables of the import (merge) engine: every import run, what it changed, what it rejected.

`imports` holds one row per run (completed, failed, dry run or undone) with its options and
outcome; `import_changes` holds what a committed run changed, so it can be undone (created
rows as id ranges, updated and soft-deleted rows with their old values); `import_rejects`
holds the records an on_error=skip_invalid run left out, for DownloadRejected;
`pending_links` holds optional links whose target was in neither the bundle nor the
database, until an import brings the target (ferry.merge.links).
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
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from ferry.db.models import Base, Tenant, utcnow

Id = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL: undo rebuilds rows with jsonb_populate_record.
Json = JSON().with_variant(postgresql.JSONB(), "postgresql")


class Import(Tenant, Base):
    __tablename__ = "imports"
    __table_args__ = (Index(None, "created_at"), UniqueConstraint("school_id", "idempotency_key"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    dataset: Mapped[str] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(Json)
    entity: Mapped[str] = mapped_column(String(64), default="")
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    source_sha256: Mapped[str] = mapped_column(String(64), default="")
    # Only runs that may have an effect keep their key (dry runs do not claim it).
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    semester: Mapped[str] = mapped_column(String(64), default="")
    summaries: Mapped[list[Any]] = mapped_column(Json)
    errors: Mapped[list[Any]] = mapped_column(Json)
    sample_changes: Mapped[list[Any]] = mapped_column(Json)
    total_errors: Mapped[int] = mapped_column(Integer, default=0)
    has_rejected: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    undone_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    error_message: Mapped[str] = mapped_column(Text, default="")
    # Why it failed, for machines (ferry.merge.reasons.IMPORT) and the reason's values.
    error_reason: Mapped[str] = mapped_column(String(64), default="", server_default="")
    error_metadata: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # Per kind: count, sample and a sentence (pending links opened or bound...).
    warnings: Mapped[list[Any] | None] = mapped_column(Json)
    # The storage key of the backup taken before the merge (backup_before), or "".
    backup_key: Mapped[str] = mapped_column(String(500), default="")
    # The digest of the run's plan (ferry.merge.digest): an apply names a dry run's.
    plan_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    # The plan's fingerprints per entity and the change limits measured.
    plan: Mapped[dict[str, Any] | None] = mapped_column(Json)


class ImportChange(Tenant, Base):
    __tablename__ = "import_changes"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    import_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imports.id", ondelete="CASCADE"), index=True
    )
    entity: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # created | updated | deleted
    row_id: Mapped[int] = mapped_column(Id)
    # Created rows are recorded as id ranges [row_id, row_id_end]: a million new rows
    # cost a handful of change rows.
    row_id_end: Mapped[int | None] = mapped_column(Id)
    old_values: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # The row's updated_at right after the import; a different value later means the row
    # changed since, and undo refuses unless forced.
    new_updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ImportReject(Tenant, Base):
    __tablename__ = "import_rejects"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    import_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imports.id", ondelete="CASCADE"), index=True
    )
    entity: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    record: Mapped[dict[str, Any]] = mapped_column(Json)


class PendingLink(Tenant, Base):
    """An optional link (course prerequisite, student mentor) of a stored record whose
    target exists nowhere yet. Open while `closed_by` is NULL; the import that brings the
    target binds the link and closes it, and undoing that import opens it again."""

    __tablename__ = "pending_links"
    __table_args__ = (
        Index(None, "target_entity", "closed_by"),
        Index(None, "entity", "row_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # The import that found the link unresolved (undoing it removes the pending link).
    import_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imports.id", ondelete="CASCADE"), index=True
    )
    entity: Mapped[str] = mapped_column(String(64))  # the linking record's entity
    row_id: Mapped[int] = mapped_column(Id)  # ... and its row
    record_key: Mapped[str] = mapped_column(Text)  # its natural key, "/"-joined
    field: Mapped[str] = mapped_column(String(200))  # the link's bundle field(s), ","-joined
    target_entity: Mapped[str] = mapped_column(String(64))
    target_key: Mapped[str] = mapped_column(Text)  # the target's natural key, "/"-joined
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # The import that bound it, or that re-imported the record with another link.
    closed_by: Mapped[str | None] = mapped_column(String(36))
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ImportBase(Tenant, Base):
    """The base of the three-way merge that keeps local edits (ferry.merge.threeway): a
    row as it was before its first local edit since it was imported, saved by a trigger
    (migration 0011); imports replace it with the source's values where they keep a
    local value, and drop it where the row equals the source again."""

    __tablename__ = "import_bases"

    entity: Mapped[str] = mapped_column(String(64), primary_key=True)
    row_id: Mapped[int] = mapped_column(Id, primary_key=True)
    # The import that wrote it ("" for a trigger's).
    import_id: Mapped[str] = mapped_column(String(36), index=True, server_default="")
    # The whole row as JSON (column -> value).
    vals: Mapped[dict[str, Any]] = mapped_column(Json)


class ImportRunning(Base):
    """SQLite: a row written and removed inside an import's transaction, so the triggers
    saving bases skip the import's own writes (PostgreSQL: SET LOCAL ferry.importing)."""

    __tablename__ = "import_running"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class KeyRename(Tenant, Base):
    """Natural keys changed here or by an import (ferry.merge.renames): exports carry them
    so that the records are renamed, not duplicated, wherever the bundle goes."""

    __tablename__ = "key_renames"
    __table_args__ = (Index(None, "renamed_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    entity: Mapped[str] = mapped_column(String(64))
    old_key: Mapped[str] = mapped_column(String(200))
    new_key: Mapped[str] = mapped_column(String(200))
    renamed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # The import that renamed it (undo takes the rename back).
    import_id: Mapped[str] = mapped_column(String(36), index=True)


class ImportConflict(Tenant, Base):
    """A field changed both here and at the source that `imports.conflicts: review` left
    for a person (ferry.merge.conflicts): the local value stays until someone picks local
    or source. Open while `resolution` is NULL; `superseded` when a later import listed the
    same field of the same row again. Undoing the import that listed it removes it;
    undoing the one that resolved it opens it again."""

    __tablename__ = "import_conflicts"
    __table_args__ = (
        Index(None, "resolution"),
        Index(None, "entity", "row_id", "field"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # The import that found it.
    import_id: Mapped[str] = mapped_column(String(36), index=True)
    entity: Mapped[str] = mapped_column(String(64))
    row_id: Mapped[int] = mapped_column(Id)
    natural_key: Mapped[str] = mapped_column(Text)  # "/"-joined
    field: Mapped[str] = mapped_column(String(64))  # the bundle field
    # {"v": value}, as JSON (dates as ISO text): the value here and the source's.
    local_value: Mapped[dict[str, Any]] = mapped_column(Json)
    source_value: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # local | source | superseded; NULL while open.
    resolution: Mapped[str | None] = mapped_column(String(16))
    resolved_by: Mapped[str] = mapped_column(String(200), server_default="")
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The import that resolved (or superseded) it; undoing that import opens it again.
    resolved_import_id: Mapped[str | None] = mapped_column(String(36), index=True)

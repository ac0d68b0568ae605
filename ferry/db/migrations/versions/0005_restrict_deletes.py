"""restrict deletes, pending links: no foreign key of the school tables cascades any
more; optional links whose target is not there yet wait in pending_links

Deleting a row that other rows need now fails instead of silently deleting them (an undo
of an import that later imports depend on once removed their records this way). Optional
self-links (course prerequisite, student mentor) stay ON DELETE SET NULL.

On SQLite the constraint is only text in the schema and the change does not affect how
rows are stored, so the table definitions are rewritten in place, as SQLite documents for
such changes; recreating the tables instead would drop them, and with foreign keys on
dropping a parent runs its ON DELETE CASCADE (and PRAGMA foreign_keys cannot be turned
off inside the migration's transaction).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (table, column, parent table): every foreign key that cascaded.
LINKS = [
    ("enrollments", "student_ref", "students"),
    ("enrollments", "course_ref", "courses"),
    ("grades", "enrollment_ref", "enrollments"),
    ("attendance", "enrollment_ref", "enrollments"),
    ("daily_performance", "enrollment_ref", "enrollments"),
    ("highlights", "student_ref", "students"),
]


def _set(old: str, new: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _sqlite_rewrite(old, new)
        return
    for table, column, parent in LINKS:
        name = f"fk_{table}_{column}_{parent}"
        op.drop_constraint(name, table, type_="foreignkey")
        op.create_foreign_key(name, table, parent, [column], ["id"], ondelete=new)


def _sqlite_rewrite(old: str, new: str) -> None:
    conn = op.get_bind()
    tables = sorted({t for t, _, _ in LINKS})
    version = conn.exec_driver_sql("PRAGMA schema_version").scalar_one()
    conn.exec_driver_sql("PRAGMA writable_schema=ON")
    try:
        for table in tables:
            sql = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).scalar_one()
            changed = sql
            for t, column, parent in LINKS:
                if t != table:
                    continue
                name = f"fk_{t}_{column}_{parent}"
                start = changed.index(f"CONSTRAINT {name} ")
                end = changed.index(f"ON DELETE {old}", start) + len(f"ON DELETE {old}")
                changed = (
                    changed[:start]
                    + changed[start:end].replace(f"ON DELETE {old}", f"ON DELETE {new}")
                    + changed[end:]
                )
            conn.exec_driver_sql(
                "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                (changed, table),
            )
        conn.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        conn.exec_driver_sql("PRAGMA writable_schema=OFF")
    problems = conn.exec_driver_sql("PRAGMA integrity_check").scalars().all()
    if problems != ["ok"]:
        raise RuntimeError(f"the rewritten schema fails SQLite's integrity check: {problems}")


def upgrade() -> None:
    _set("CASCADE", "RESTRICT")
    op.create_table(
        "pending_links",
        sa.Column("id", ID, nullable=False),
        sa.Column("import_id", sa.String(length=36), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("row_id", ID, nullable=False),
        sa.Column("record_key", sa.Text(), nullable=False),
        sa.Column("field", sa.String(length=200), nullable=False),
        sa.Column("target_entity", sa.String(length=64), nullable=False),
        sa.Column("target_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sa.String(length=36), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["imports.id"],
            name=op.f("fk_pending_links_import_id_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_links")),
    )
    with op.batch_alter_table("pending_links") as batch_op:
        batch_op.create_index(batch_op.f("ix_pending_links_import_id"), ["import_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_pending_links_target_entity_closed_by"),
            ["target_entity", "closed_by"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_pending_links_entity_row_id"), ["entity", "row_id"], unique=False
        )
    # Adding a column needs no table rebuild on either backend.
    op.add_column("imports", sa.Column("warnings", JSON, nullable=True))
    op.add_column(
        "imports",
        sa.Column("backup_key", sa.String(length=500), nullable=False, server_default=""),
    )


def downgrade() -> None:
    # Natively (SQLite >= 3.35): a batch rebuild would drop `imports`, and with foreign
    # keys on that deletes every import_changes row.
    op.execute("ALTER TABLE imports DROP COLUMN backup_key")
    op.execute("ALTER TABLE imports DROP COLUMN warnings")
    op.drop_table("pending_links")
    _set("RESTRICT", "CASCADE")

"""imports.plan_digest and imports.plan: a dry run's plan, made binding; import_bases:
the values a row held before its first local edit since it was imported (three-way merge
keeping local edits), saved by triggers;
key_renames: natural keys changed, carried by exports

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Earlier imports have no plan (NULL): their digests cannot be applied.
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("imports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("plan", json, nullable=True))
        batch_op.create_index("ix_imports_plan_digest", ["plan_digest"])
    op.create_table(
        "import_bases",
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("row_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("import_id", sa.String(length=36), nullable=False, server_default=""),
        sa.Column("vals", json, nullable=False),
        sa.PrimaryKeyConstraint("entity", "row_id", name="pk_import_bases"),
    )
    op.create_index("ix_import_bases_import_id", "import_bases", ["import_id"])
    # SQLite: a row here, written and removed inside an import's own transaction, tells
    # the triggers that the import is writing (PostgreSQL: SET LOCAL ferry.importing).
    op.create_table(
        "import_running",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_import_running"),
    )
    _keep_base_triggers()
    op.create_table(
        "key_renames",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("old_key", sa.String(length=200), nullable=False),
        sa.Column("new_key", sa.String(length=200), nullable=False),
        sa.Column("renamed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("import_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_key_renames"),
    )
    op.create_index("ix_key_renames_renamed_at", "key_renames", ["renamed_at"])
    op.create_index("ix_key_renames_import_id", "key_renames", ["import_id"])


# The school's tables (entity name = table name): a local edit of a row saves the row as
# it was (the values last imported) in import_bases, once (ferry.merge.threeway).
TABLES = (
    "courses",
    "students",
    "enrollments",
    "highlights",
    "grades",
    "attendance",
    "daily_performance",
)


def _keep_base_triggers() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION ferry_keep_base() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              INSERT INTO import_bases (entity, row_id, import_id, vals)
              VALUES (TG_ARGV[0], OLD.id, '', to_jsonb(OLD))
              ON CONFLICT (entity, row_id) DO NOTHING;
              RETURN NEW;
            END $$
            """
        )
        for table in TABLES:
            op.execute(
                # The WHEN is checked by the executor: an import's own updates (SET
                # LOCAL ferry.importing) never call the function.
                f"CREATE TRIGGER ferry_keep_base AFTER UPDATE ON {table} FOR EACH ROW "
                "WHEN (current_setting('ferry.importing', true) IS DISTINCT FROM 'on') "
                f"EXECUTE FUNCTION ferry_keep_base('{table}')"
            )
        return
    inspector = sa.inspect(bind)
    for table in TABLES:
        parts = []
        for col in inspector.get_columns(table):
            name = col["name"]
            value = f'OLD."{name}"'
            if isinstance(col["type"], sa.Float):  # 17 digits: SQLite's JSON rounds to 15
                value = f"CASE WHEN {value} IS NULL THEN NULL ELSE printf('%!.17g', {value}) END"
            parts.append(f"'{name}', {value}")
        # (Not INSERT OR IGNORE: the statement that fires a trigger overrides its
        # conflict clause.)
        op.execute(
            f"CREATE TRIGGER ferry_keep_base_{table} AFTER UPDATE ON {table} "
            "WHEN NOT EXISTS (SELECT 1 FROM import_running) BEGIN "
            "INSERT INTO import_bases (entity, row_id, import_id, vals) "
            f"SELECT '{table}', OLD.id, '', json_object({', '.join(parts)}) "
            "WHERE NOT EXISTS (SELECT 1 FROM import_bases "
            f"WHERE entity = '{table}' AND row_id = OLD.id); END"
        )
        # SQLite reuses the ids of deleted rows: their bases go with them.
        op.execute(
            f"CREATE TRIGGER ferry_drop_base_{table} AFTER DELETE ON {table} BEGIN "
            f"DELETE FROM import_bases WHERE entity = '{table}' AND row_id = OLD.id; END"
        )


def downgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        if bind.dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS ferry_keep_base ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS ferry_keep_base_{table}")
            op.execute(f"DROP TRIGGER IF EXISTS ferry_drop_base_{table}")
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ferry_keep_base()")
    op.drop_table("import_running")
    op.drop_index("ix_key_renames_import_id", table_name="key_renames")
    op.drop_index("ix_key_renames_renamed_at", table_name="key_renames")
    op.drop_table("key_renames")
    op.drop_index("ix_import_bases_import_id", table_name="import_bases")
    op.drop_table("import_bases")
    with op.batch_alter_table("imports", schema=None) as batch_op:
        batch_op.drop_index("ix_imports_plan_digest")
        batch_op.drop_column("plan")
        batch_op.drop_column("plan_digest")

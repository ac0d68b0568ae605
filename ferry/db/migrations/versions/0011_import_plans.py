"""imports.plan_digest and imports.plan: a dry run's plan, made binding; import_bases:
the values bundle imports last imported per record (three-way merge keeping local edits);
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
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("import_id", sa.String(length=36), nullable=False),
        sa.Column("vals", json, nullable=False),
        sa.PrimaryKeyConstraint("entity", "key", name="pk_import_bases"),
    )
    op.create_index("ix_import_bases_import_id", "import_bases", ["import_id"])
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


def downgrade() -> None:
    op.drop_index("ix_key_renames_import_id", table_name="key_renames")
    op.drop_index("ix_key_renames_renamed_at", table_name="key_renames")
    op.drop_table("key_renames")
    op.drop_index("ix_import_bases_import_id", table_name="import_bases")
    op.drop_table("import_bases")
    with op.batch_alter_table("imports", schema=None) as batch_op:
        batch_op.drop_index("ix_imports_plan_digest")
        batch_op.drop_column("plan")
        batch_op.drop_column("plan_digest")

"""import_conflicts: fields changed both here and at the source that the conflict policy
`review` leaves for a person to decide (ferry.merge.conflicts)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    ident = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "import_conflicts",
        sa.Column("id", ident, nullable=False),
        sa.Column("import_id", sa.String(length=36), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("row_id", ident, nullable=False),
        sa.Column("natural_key", sa.Text(), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("local_value", json, nullable=False),
        sa.Column("source_value", json, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_import_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_import_conflicts"),
    )
    op.create_index("ix_import_conflicts_import_id", "import_conflicts", ["import_id"])
    op.create_index("ix_import_conflicts_resolution", "import_conflicts", ["resolution"])
    op.create_index(
        "ix_import_conflicts_entity_row_id_field", "import_conflicts", ["entity", "row_id", "field"]
    )
    op.create_index(
        "ix_import_conflicts_resolved_import_id", "import_conflicts", ["resolved_import_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_import_conflicts_resolved_import_id", table_name="import_conflicts")
    op.drop_index("ix_import_conflicts_entity_row_id_field", table_name="import_conflicts")
    op.drop_index("ix_import_conflicts_resolution", table_name="import_conflicts")
    op.drop_index("ix_import_conflicts_import_id", table_name="import_conflicts")
    op.drop_table("import_conflicts")

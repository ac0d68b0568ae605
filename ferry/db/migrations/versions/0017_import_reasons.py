"""imports.error_reason / error_metadata: why a run failed, for machines (a mail or page
words it in its own language; ferry.merge.reasons), beside the English error_message.
Record errors keep theirs inside imports.errors (code, details).

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("imports") as batch:
        batch.add_column(
            sa.Column("error_reason", sa.String(length=64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("error_metadata", json, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("imports") as batch:
        batch.drop_column("error_metadata")
        batch.drop_column("error_reason")

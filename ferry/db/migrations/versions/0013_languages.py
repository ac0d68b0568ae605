"""export_jobs.language and users.language: the language an export was asked in (its
headers, file name and mail) and the one a user last used the page in (their mails)

Revision ID: 0013
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing jobs and users get "" (field names as headers; notify.default_language).
    for table in ("export_jobs", "users"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("language", sa.String(length=8), nullable=False, server_default="")
            )


def downgrade() -> None:
    for table in ("users", "export_jobs"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("language")

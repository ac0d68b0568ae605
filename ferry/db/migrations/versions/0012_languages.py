"""export_jobs.language and users.language: the language an export was asked in (its
headers, file name and mail) and the one a user last used the page in (their mails);
export_jobs.error_reason and error_metadata: why a job failed, as a machine reason a page
words in its own language (google.rpc.ErrorInfo's reason and metadata)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing jobs and users get "" (field names as headers; notify.default_language).
    for table in ("export_jobs", "users"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("language", sa.String(length=8), nullable=False, server_default="")
            )
    with op.batch_alter_table("export_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("error_reason", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("error_metadata", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_jobs", schema=None) as batch_op:
        batch_op.drop_column("error_metadata")
        batch_op.drop_column("error_reason")
    for table in ("users", "export_jobs"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("language")

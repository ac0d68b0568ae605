"""ix_students_deleted: an index of the soft-deleted students alone (a partial index, on
both backends). A report's class averages leave out the enrolments of deleted students by
an anti-join on it: the report read every student of the school for that before (a
sequential scan of 20k students and a hash of them, on every cache miss of the bench).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    deleted = sa.text("deleted_at IS NOT NULL")
    op.create_index(
        "ix_students_deleted",
        "students",
        ["id"],
        postgresql_where=deleted,
        sqlite_where=deleted,
    )


def downgrade() -> None:
    op.drop_index("ix_students_deleted", table_name="students")

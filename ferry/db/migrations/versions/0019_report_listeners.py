"""report_listeners and report_change_seq: reports processes that keep the data versions
in memory, invalidated by PostgreSQL notifications, hold a lease row each; a committed
import waits until every live one has seen its change (ferry.reports.versions).

An infrastructure table, like import_running: one row per reports process, not per school
(a process serves every school), so no school_id and no row-level security. The sequence
is owned by the table's seen_seq column, so it follows the table to the app role
(ferry.db.roles.hand_over). SQLite gets the table (the models' schema is one) and never
uses it.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_listeners",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_seconds", sa.Float(), nullable=False),
        sa.Column("seen_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_listeners")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE report_change_seq OWNED BY report_listeners.seen_seq")


def downgrade() -> None:
    op.drop_table("report_listeners")  # its sequence goes with it (OWNED BY)

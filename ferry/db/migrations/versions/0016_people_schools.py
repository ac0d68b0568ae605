"""People belong to a school: `users.school_id` and `auth_tokens.school_id` (docs/tenants.md),
every existing user and token in the default school (1).

Both stay platform tables (no row-level security): a sign-in finds its user before any
school is known, and every service reads the revoked token ids of all schools. The
application scopes them instead (ferry.users, ferry.auth.store take the acting school).
Usernames stay unique in the installation, so a sign-in needs no school. The way back is
refused while several schools exist, before any change (as 0013 and 0015 do).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLES = ("users", "auth_tokens")


def _fk(table: str) -> str:
    return f"fk_{table}_school_id_schools"


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("school_id", ID, nullable=False, server_default="1"))
            batch_op.create_foreign_key(
                _fk(table), "schools", ["school_id"], ["id"], ondelete="RESTRICT"
            )
            batch_op.create_index(f"ix_{table}_school_id", ["school_id"])


def downgrade() -> None:
    bind = op.get_bind()
    schools = bind.exec_driver_sql("SELECT count(*) FROM schools").scalar_one()
    if schools > 1:  # (before any change: SQLite rebuilds tables outside a transaction)
        raise RuntimeError(
            f"this database holds {schools} schools; without school_id their users and "
            "tokens would belong to every school"
        )
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_index(f"ix_{table}_school_id")
            batch_op.drop_constraint(_fk(table), type_="foreignkey")
            batch_op.drop_column("school_id")

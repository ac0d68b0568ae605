"""import_conflicts joins the tenants: a `school_id` (the acting school, as migration 0013
gives every tenant table) and, on PostgreSQL, the forced row-level security policy. The
table (0014) and the schools (0013) were written side by side; a conflict holds a
school's values, so another school must never list or decide it.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "import_conflicts"
FK = f"fk_{TABLE}_school_id_schools"
# As in 0013: the acting school, else the default one; the policy compares with it.
PG_DEFAULT = "COALESCE(NULLIF(current_setting('ferry.school', true), '')::bigint, 1)"
PG_POLICY = "school_id = (SELECT NULLIF(current_setting('ferry.school', true), '')::bigint)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {TABLE} ADD COLUMN school_id BIGINT NOT NULL DEFAULT 1")
        op.execute(f"ALTER TABLE {TABLE} ALTER COLUMN school_id SET DEFAULT {PG_DEFAULT}")
        op.create_foreign_key(FK, TABLE, "schools", ["school_id"], ["id"], ondelete="RESTRICT")
        op.execute(f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY ferry_school ON {TABLE} USING ({PG_POLICY}) WITH CHECK ({PG_POLICY})"
        )
        return
    with op.batch_alter_table(TABLE, recreate="always") as batch_op:
        batch_op.add_column(sa.Column("school_id", ID, nullable=False, server_default="1"))
        batch_op.create_foreign_key(FK, "schools", ["school_id"], ["id"], ondelete="RESTRICT")


def downgrade() -> None:
    bind = op.get_bind()
    schools = bind.exec_driver_sql("SELECT count(*) FROM schools").scalar_one()
    if schools > 1:  # (before any change: SQLite runs a table rebuild outside a transaction)
        raise RuntimeError(
            f"this database holds {schools} schools; without school_id their conflicts "
            "would be one list that every school could read and decide"
        )
    if bind.dialect.name == "postgresql":
        op.execute(f"DROP POLICY IF EXISTS ferry_school ON {TABLE}")
        op.execute(f"ALTER TABLE {TABLE} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {TABLE} DISABLE ROW LEVEL SECURITY")
        op.drop_constraint(FK, TABLE, type_="foreignkey")
        op.drop_column(TABLE, "school_id")
        return
    with op.batch_alter_table(TABLE, recreate="always") as batch_op:
        batch_op.drop_constraint(FK, type_="foreignkey")
        batch_op.drop_column("school_id")

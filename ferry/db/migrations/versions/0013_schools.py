"""schools: tenants (docs/tenants.md). A `schools` table with the `default` school; a
`school_id` on every tenant table, every existing row moved into the default school;
natural keys, idempotency keys and event ids unique per school; on PostgreSQL a
row-level security policy on every tenant table comparing `school_id` with the
transaction's `ferry.school`, forced on the tables' owner too.

SQLite: every tenant table is rebuilt (migrations run with foreign keys off there,
ferry.db.migrate, and are checked before commit). The triggers of migration 0011 are
made again, so the values they save carry `school_id` too.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The school's data (0011's trigger tables) and Ferry's own per-school records.
DATA = (
    "courses",
    "students",
    "enrollments",
    "highlights",
    "grades",
    "attendance",
    "daily_performance",
)
RECORDS = (
    "export_jobs",
    "imports",
    "import_changes",
    "import_rejects",
    "pending_links",
    "import_bases",
    "key_renames",
    "notifications",
    "notify_outbox",
    "scope_counts",
    "report_versions",
)
TENANT_TABLES = DATA + RECORDS

# table -> (old unique columns, new unique columns)
UNIQUES = {
    "courses": (("course_code",), ("school_id", "course_code")),
    "students": (("student_id",), ("school_id", "student_id")),
    "export_jobs": (("idempotency_key",), ("school_id", "idempotency_key")),
    "imports": (("idempotency_key",), ("school_id", "idempotency_key")),
    "notifications": (("event_id",), ("school_id", "event_id")),
}
# table -> primary key columns without the school
KEYS = {
    "scope_counts": ("dataset", "scope", "entity"),
    "report_versions": ("kind", "key"),
}

# The acting school (ferry.db.tenant, set by the engine per transaction), or the
# default school where nothing set it (the platform role's own statements).
PG_DEFAULT = "COALESCE(NULLIF(current_setting('ferry.school', true), '')::bigint, 1)"
# Evaluated once per statement (an InitPlan), not once per row. No school set: NULL,
# and no row matches.
PG_POLICY = "school_id = (SELECT NULLIF(current_setting('ferry.school', true), '')::bigint)"


def _uq(table: str, cols: tuple[str, ...]) -> str:
    return f"uq_{table}_{'_'.join(cols)}"


def upgrade() -> None:
    op.create_table(
        "schools",
        sa.Column("id", ID, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False, server_default=""),
        sa.Column("time_zone", sa.String(length=64), nullable=False, server_default=""),
        sa.Column("sender", sa.String(length=254), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schools"),
        sa.UniqueConstraint("code", name="uq_schools_code"),
    )
    schools = sa.table(
        "schools",
        sa.column("id", ID),
        sa.column("code", sa.String),
        sa.column("name", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        schools.insert().values(
            id=1, code="default", name="Default school", created_at=sa.func.now()
        )
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_up()
    else:
        _sqlite_up()


def _postgresql_up() -> None:
    op.execute("SELECT setval(pg_get_serial_sequence('schools', 'id'), 1)")
    for table in TENANT_TABLES:
        # A constant default first: existing rows take it without a rewrite.
        op.execute(f"ALTER TABLE {table} ADD COLUMN school_id BIGINT NOT NULL DEFAULT 1")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN school_id SET DEFAULT {PG_DEFAULT}")
        op.create_foreign_key(
            f"fk_{table}_school_id_schools",
            table,
            "schools",
            ["school_id"],
            ["id"],
            ondelete="RESTRICT",
        )
    for table, (old, new) in UNIQUES.items():
        op.drop_constraint(_uq(table, old), table, type_="unique")
        op.create_unique_constraint(_uq(table, new), table, list(new))
    for table, cols in KEYS.items():
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.create_primary_key(f"pk_{table}", table, ["school_id", *cols])
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY ferry_school ON {table} USING ({PG_POLICY}) WITH CHECK ({PG_POLICY})"
        )


def _school_column() -> sa.Column[int]:
    # Its foreign key is added by name beside it.
    return sa.Column("school_id", ID, nullable=False, server_default="1")


def _sqlite_up() -> None:
    # Every tenant table is rebuilt: SQLite adds a column's foreign key in place only
    # without its name and ON DELETE as the models give them.
    _drop_sqlite_triggers()
    for table in TENANT_TABLES:
        with op.batch_alter_table(table, recreate="always") as batch_op:
            batch_op.add_column(_school_column())
            if table in UNIQUES:
                old, new = UNIQUES[table]
                batch_op.drop_constraint(_uq(table, old), type_="unique")
                batch_op.create_unique_constraint(_uq(table, new), list(new))
            if table in KEYS:
                batch_op.drop_constraint(f"pk_{table}", type_="primary")
                batch_op.create_primary_key(f"pk_{table}", ["school_id", *KEYS[table]])
            batch_op.create_foreign_key(
                f"fk_{table}_school_id_schools",
                "schools",
                ["school_id"],
                ["id"],
                ondelete="RESTRICT",
            )
    _make_sqlite_triggers()


def _drop_sqlite_triggers() -> None:
    for table in DATA:
        op.execute(f"DROP TRIGGER IF EXISTS ferry_keep_base_{table}")
        op.execute(f"DROP TRIGGER IF EXISTS ferry_drop_base_{table}")


def _make_sqlite_triggers() -> None:
    """Migration 0011's triggers, over the tables' columns as they are now."""
    inspector = sa.inspect(op.get_bind())
    for table in DATA:
        parts = []
        for col in inspector.get_columns(table):
            name = col["name"]
            value = f'OLD."{name}"'
            if isinstance(col["type"], sa.Float):  # 17 digits: SQLite's JSON rounds to 15
                value = f"CASE WHEN {value} IS NULL THEN NULL ELSE printf('%!.17g', {value}) END"
            parts.append(f"'{name}', {value}")
        op.execute(
            f"CREATE TRIGGER ferry_keep_base_{table} AFTER UPDATE ON {table} "
            "WHEN NOT EXISTS (SELECT 1 FROM import_running) BEGIN "
            "INSERT INTO import_bases (entity, row_id, import_id, vals) "
            f"SELECT '{table}', OLD.id, '', json_object({', '.join(parts)}) "
            "WHERE NOT EXISTS (SELECT 1 FROM import_bases "
            f"WHERE entity = '{table}' AND row_id = OLD.id); END"
        )
        op.execute(
            f"CREATE TRIGGER ferry_drop_base_{table} AFTER DELETE ON {table} BEGIN "
            f"DELETE FROM import_bases WHERE entity = '{table}' AND row_id = OLD.id; END"
        )


def downgrade() -> None:
    bind = op.get_bind()
    schools = bind.exec_driver_sql("SELECT count(*) FROM schools").scalar_one()
    if schools > 1:
        raise RuntimeError(
            f"this database holds {schools} schools; before 0013 there is room for one "
            "(natural keys were unique across all rows)"
        )
    if bind.dialect.name == "postgresql":
        for table in TENANT_TABLES:
            op.execute(f"DROP POLICY IF EXISTS ferry_school ON {table}")
            op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        for table, cols in KEYS.items():
            op.drop_constraint(f"pk_{table}", table, type_="primary")
            op.create_primary_key(f"pk_{table}", table, list(cols))
        for table, (old, new) in UNIQUES.items():
            op.drop_constraint(_uq(table, new), table, type_="unique")
            op.create_unique_constraint(_uq(table, old), table, list(old))
        for table in TENANT_TABLES:
            op.execute(f"ALTER TABLE {table} DROP COLUMN school_id")  # its foreign key too
    else:
        _drop_sqlite_triggers()
        for table in TENANT_TABLES:
            with op.batch_alter_table(table, recreate="always") as batch_op:
                batch_op.drop_constraint(f"fk_{table}_school_id_schools", type_="foreignkey")
                if table in UNIQUES:
                    old, new = UNIQUES[table]
                    batch_op.drop_constraint(_uq(table, new), type_="unique")
                    batch_op.create_unique_constraint(_uq(table, old), list(old))
                if table in KEYS:
                    batch_op.drop_constraint(f"pk_{table}", type_="primary")
                    batch_op.create_primary_key(f"pk_{table}", list(KEYS[table]))
                batch_op.drop_column("school_id")
        _make_sqlite_triggers()
    op.drop_table("schools")

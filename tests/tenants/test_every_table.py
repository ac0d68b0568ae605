"""No table forgets the wall: every table a migration makes is either one of the platform's
own (listed here, with why) or a tenant table with `school_id` and, on PostgreSQL, forced
row-level security with the school policy. A table added later without them fails here
(import_conflicts, written beside the schools, did)."""

from __future__ import annotations

import sqlalchemy as sa

from ferry.db.engine import make_engine
from ferry.db.models import Base

# Tables of the installation, not of a school.
PLATFORM = {
    "alembic_version": "the schema's version",
    "schools": "the tenants themselves",
    "users": "sign-ins: found before any school is known (school_id, scoped by the app)",
    "auth_tokens": "issued tokens: every school's revoked ids are read (school_id, app scope)",
    "notify_channel_state": "a channel's health, shared by every school's mails",
    "import_running": "SQLite's marker of an import's own writes (the base triggers)",
    "report_listeners": "reports processes' leases on their in-memory data versions; a "
    "process serves every school",
}


def test_every_table_is_a_platform_table_or_walled(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names())
        assert set(Base.metadata.tables) <= tables  # every model has its migration
        tenants = tables - set(PLATFORM)
        assert set(PLATFORM) <= tables, "a platform table is gone: update PLATFORM"
        for table in sorted(tenants):
            columns = {c["name"] for c in inspector.get_columns(table)}
            assert "school_id" in columns, f"{table} has no school_id"
        if engine.dialect.name != "postgresql":
            return
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
                    "EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid "
                    "AND p.polname = 'ferry_school') FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                )
            ).all()
        walls = {name: (rls, forced, policy) for name, rls, forced, policy in rows}
        for table in sorted(tenants):
            assert walls[table] == (True, True, True), f"{table}: RLS, FORCE, policy"
        for table in PLATFORM:
            if table in walls:
                assert walls[table][0] is False, f"{table} is the platform's, not a school's"
    finally:
        engine.dispose()

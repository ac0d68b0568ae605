"""Migration 0013 (schools): every existing row lands in the default school unchanged,
natural keys become unique per school, and the way back refuses to merge schools."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ferry.db import migrate, tenant
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from tests.conftest import BACKENDS, fresh_database
from tests.merge.helpers import checksum, execute, scalar

TENANT_TABLES = (
    "courses",
    "students",
    "enrollments",
    "highlights",
    "grades",
    "attendance",
    "daily_performance",
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

COURSE = (
    "INSERT INTO courses (course_code, semester, title, description, credits, teacher, "
    "status, created_at, updated_at) VALUES (:code, '2026-fall', 'T', '', 1, '', 'active', "
    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
)


@pytest.mark.parametrize("backend_", BACKENDS)
def test_rows_move_into_the_default_school_and_keys_become_per_school(
    backend_: str, tmp_path: Path
) -> None:
    with fresh_database(backend_, tmp_path) as url:
        engine = make_engine(url)
        try:
            # Seeded before 0010 (the seed writes today's scope_counts); 0010 counts it.
            migrate.upgrade(engine, "0009")
            seed(engine, Scale.SMALL, seed=3)
            migrate.upgrade(engine, "0012")
            execute(
                engine,
                "INSERT INTO report_versions (kind, key, version) VALUES ('generation', '', 4)",
            )
            before = checksum(engine)
            counts = {t: scalar(engine, f"SELECT count(*) FROM {t}") for t in TENANT_TABLES}
            migrate.upgrade(engine)
            head = migrate.current(engine)

            assert checksum(engine) == before
            for t in TENANT_TABLES:
                assert scalar(engine, f"SELECT count(*) FROM {t}") == counts[t], t
                assert scalar(engine, f"SELECT count(*) FROM {t} WHERE school_id <> 1") == 0, t
            with engine.connect() as conn:
                schools = conn.execute(sa.text("SELECT id, code FROM schools")).all()
            assert [tuple(r) for r in schools] == [(1, "default")]
            code = scalar(engine, "SELECT min(course_code) FROM courses")

            # The same code again in the same school is refused ...
            with pytest.raises(sa.exc.IntegrityError):
                execute(engine, COURSE, code=code)
            # ... and taken in another school, whose rows the database marks as its own.
            execute(
                engine,
                "INSERT INTO schools (code, name, created_at) VALUES "
                "('north', 'North', CURRENT_TIMESTAMP)",
            )
            north = scalar(engine, "SELECT id FROM schools WHERE code = 'north'")
            assert north == 2
            with tenant.acting_for(north):
                if backend_ == "sqlite":  # no ferry.school there: the column says it
                    execute(
                        engine,
                        COURSE.replace("(course_code", "(school_id, course_code").replace(
                            "VALUES (:code", "VALUES (2, :code"
                        ),
                        code=code,
                    )
                else:
                    execute(engine, COURSE, code=code)
            assert (
                scalar(engine, "SELECT count(*) FROM courses WHERE course_code = :c", c=code) == 2
            )
            assert scalar(engine, "SELECT count(*) FROM courses WHERE school_id = 2") == 1

            # Back to 0012 would put two schools' keys into one: refused, nothing changed.
            with pytest.raises(RuntimeError, match="2 schools"):
                migrate.downgrade(engine, "0012")
            assert migrate.current(engine) == head  # (0013 and what came after it)
            execute(engine, "DELETE FROM courses WHERE school_id = 2")
            execute(engine, "DELETE FROM schools WHERE id = 2")
            migrate.downgrade(engine, "0012")
            assert checksum_at_0012(engine) == before
            migrate.upgrade(engine)
            assert checksum(engine) == before
        finally:
            engine.dispose()


def checksum_at_0012(engine: sa.Engine) -> dict[str, str]:
    """checksum() leaves school_id out, so it reads a 0012 schema as well."""
    with engine.connect() as conn:
        assert "school_id" not in {c["name"] for c in sa.inspect(conn).get_columns("courses")}
    return checksum(engine)

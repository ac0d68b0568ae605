"""The `sql` bundle format: a psql script that restores a bundle into an empty migrated
database exactly as a Ferry import does, idempotently; importing one is refused."""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.events import session_events
from ferry.bundle.formats.sql import SqlBundle
from ferry.bundle.scan import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from ferry.errors import InvalidArgument
from ferry.imports import detect
from ferry.merge import MergeOptions, Status, Strategy, run_import
from tests.conftest import fresh_database
from tests.merge.helpers import checksum

pytestmark = pytest.mark.postgres
ALL = SessionRequest("", include_deleted=True, scope="all")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Engine]:
    with fresh_database("postgres", tmp_path / "demo") as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        seed(engine, Scale.SMALL, seed=13)
        yield engine
        engine.dispose()


def _empty(stack: list[object], tmp_path: Path, name: str) -> Engine:
    cm = fresh_database("postgres", tmp_path / name)
    url = cm.__enter__()
    stack.append(cm)
    engine = make_engine(url)
    migrate.upgrade(engine)
    return engine


def _psql(engine: Engine, script: Path) -> subprocess.CompletedProcess[str]:
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_psql_restores_the_script_as_a_ferry_import_does_and_twice_the_same(
    demo: Engine, tmp_path: Path
) -> None:
    script = tmp_path / "all.sql"
    with script.open("wb") as f:
        SqlBundle().write(session_events(demo, SCHOOL, ALL), f)
    text = script.read_text()
    assert "BEGIN;" in text and text.rstrip().endswith("COMMIT;")
    assert "_ref" not in text.split("INSERT INTO ferry_restore_grades")[1].split(";")[0]
    stack: list[object] = []
    try:
        by_psql = _empty(stack, tmp_path, "psql")
        by_ferry = _empty(stack, tmp_path, "ferry")
        done = _psql(by_psql, script)
        assert done.returncode == 0, done.stderr
        outcome = run_import(
            by_ferry,
            SCHOOL,
            session_events(demo, SCHOOL, ALL),
            MergeOptions(strategy=Strategy.REPLACE),
            requested_by="tester",
            source_sha256="x",
        )
        assert outcome.status is Status.COMPLETED
        assert checksum(by_psql) == checksum(by_ferry) == checksum(demo)
        again = _psql(by_psql, script)  # idempotent: the same rows
        assert again.returncode == 0, again.stderr
        assert checksum(by_psql) == checksum(demo)
        # Without its courses the enrollments miss a required parent: the script fails
        # there, after the students were inserted, and the transaction leaves nothing.
        broken = tmp_path / "broken.sql"
        broken.write_text(
            re.sub(r"INSERT INTO ferry_restore_courses .*?\);\n", "", text, flags=re.S)
        )
        assert "INSERT INTO ferry_restore_courses" not in broken.read_text()
        fresh = _empty(stack, tmp_path, "broken")
        failed = _psql(fresh, broken)
        assert failed.returncode != 0
        assert "course_ref" in failed.stderr, failed.stderr
        with fresh.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM students")).scalar() == 0
        for e in (by_psql, by_ferry, fresh):
            e.dispose()
    finally:
        for cm in reversed(stack):
            cm.__exit__(None, None, None)  # type: ignore[attr-defined]


def test_importing_a_sql_bundle_is_refused_saying_so() -> None:
    fmt = detect.bundle_format("", "backup.sql")
    with pytest.raises(InvalidArgument) as refused:
        list(fmt.read(io.BytesIO(b"BEGIN; COMMIT;"), None))
    assert "export-only" in refused.value.message
    assert refused.value.field == "options.bundle_format"

"""What an entity export writes imports back through the tabular path (issue 10)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.formats.base import ReadLimits
from ferry.imports import detect
from ferry.imports.tabular import EntityRows
from ferry.merge import MergeOptions, Status, run_import
from tests.imports.exported import export_file
from tests.imports.helpers import seed_small


@pytest.fixture
def demo(empty_url: str) -> Iterator[Engine]:
    seed_small(empty_url)
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


def _import(engine: Engine, entity: str, fmt: str, data: bytes):  # type: ignore[no-untyped-def]
    reader = detect.tabular_reader(fmt, "")
    rows = reader.read(io.BytesIO(data), ReadLimits())
    batches = EntityRows(SCHOOL.entity(entity), rows, {}, 500)
    return run_import(
        engine,
        SCHOOL,
        batches,
        MergeOptions(strategy="update", bundle_format=fmt),  # type: ignore[arg-type]
        requested_by="tester",
        source_sha256="x",
        entity=entity,
    )


def test_the_exported_students_csv_with_an_empty_email_imports_back(demo: Engine) -> None:
    with demo.connect() as conn:
        empty = conn.execute(sa.text("SELECT count(*) FROM students WHERE email = ''")).scalar()
    assert empty, "the demo data has a student without an email"
    data = export_file(demo, "students", "csv")
    outcome = _import(demo, "students", "csv", data)
    assert outcome.status is Status.COMPLETED, outcome.errors[:3]
    assert outcome.total_errors == 0
    (summary,) = outcome.summaries
    assert summary.created == summary.updated == 0
    with demo.connect() as conn:
        after = conn.execute(sa.text("SELECT count(*) FROM students WHERE email = ''")).scalar()
    assert after == empty

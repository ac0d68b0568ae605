"""What an entity export writes imports back through the tabular path (issue 10)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch
from ferry.datasets.school import SCHOOL
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.formats.base import ReadLimits
from ferry.formats.cells import to_millisecond
from ferry.imports import detect
from ferry.imports.tabular import EntityRows
from ferry.merge import MergeOptions, Status, run_import
from tests.conftest import fresh_database
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


def _ms(value: object) -> object:
    """An instant to the millisecond: as much as Excel keeps."""
    if isinstance(value, str) and len(value) >= 20 and value[10] == "T" and value.endswith("Z"):
        return to_millisecond(dt.datetime.fromisoformat(value.replace("Z", "+00:00"))).isoformat()
    return value


def _rows(engine: Engine, entity: str, fmt: str = "json") -> list[tuple[tuple[str, str], ...]]:
    """The entity's rows as its json export writes them, in a comparable order (xlsx:
    instants to the millisecond, Excel's precision)."""
    doc = orjson.loads(export_file(engine, entity, "json"))
    fix = _ms if fmt == "xlsx" else (lambda v: v)
    return sorted(tuple(sorted((k, repr(fix(v))) for k, v in r.items())) for r in doc["rows"])


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_every_entity_exported_imports_into_an_empty_database_as_the_same_rows(
    demo: Engine, backend: str, tmp_path: Path, fmt: str
) -> None:
    with fresh_database(backend, tmp_path / "t") as url:
        target = make_engine(url)
        try:
            migrate.upgrade(target)
            for entity in SCHOOL.in_order():
                data = export_file(demo, entity.name, fmt)
                outcome = _import(target, entity.name, fmt, data)
                assert outcome.status is Status.COMPLETED, (entity.name, outcome.errors[:3])
                (summary,) = outcome.summaries
                assert summary.created == len(_rows(demo, entity.name)), entity.name
            for entity in SCHOOL.in_order():
                assert _rows(target, entity.name, fmt) == _rows(demo, entity.name, fmt), entity.name
        finally:
            target.dispose()


_TEXT = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cc", "Cs"), include_characters="\n\t"
    ),
    max_size=20,
)
_TRICKY = st.sampled_from(["", "=SUM(A1)", "+1", "-2", "@x", "Βασίλης", "  padded  ", 'a,b;"c"'])


@st.composite
def _students(draw: st.DrawFn) -> list[dict[str, object]]:
    n = draw(st.integers(1, 12))
    out: list[dict[str, object]] = []
    for i in range(n):
        instant = st.datetimes(
            min_value=dt.datetime(1990, 1, 1),
            max_value=dt.datetime(2090, 1, 1),
            timezones=st.just(dt.UTC),
        )
        out.append(
            {
                "student_id": f"H{i:04d}",
                "first_name": draw(_TRICKY | _TEXT),
                "last_name": draw(_TRICKY | _TEXT),
                "email": draw(_TRICKY | _TEXT),
                "date_of_birth": draw(
                    st.none() | st.dates(dt.date(1900, 3, 1), dt.date(2100, 1, 1)).map(str)
                ),
                "year_level": draw(st.integers(-(2**31), 2**31 - 1)),
                "status": draw(_TRICKY | _TEXT.filter(lambda t: len(t) <= 16)),
                "created_at": draw(instant),
                "updated_at": draw(instant),
                "deleted_at": draw(st.none() | instant),
                "mentor_student_id": draw(
                    st.none() | st.sampled_from([f"H{j:04d}" for j in range(n)])
                ),
            }
        )
    return out


@pytest.fixture
def pair(backend: str, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    with fresh_database(backend, tmp_path / "a") as a, fresh_database(backend, tmp_path / "b") as b:
        engines = (make_engine(a), make_engine(b))
        for e in engines:
            migrate.upgrade(e)
        yield engines
        for e in engines:
            e.dispose()


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(students=_students(), fmt=st.sampled_from(["csv", "xlsx", "json"]))
def test_generated_students_survive_export_and_import(
    pair: tuple[Engine, Engine], students: list[dict[str, object]], fmt: str
) -> None:
    source, target = pair
    for e in pair:
        with e.begin() as conn:
            conn.execute(sa.text("DELETE FROM students"))
    seeded = run_import(
        source,
        SCHOOL,
        [Batch("students", students)],
        MergeOptions(),
        requested_by="tester",
        source_sha256="x",
        entity="students",
    )
    assert seeded.status is Status.COMPLETED, seeded.errors[:3]
    outcome = _import(target, "students", fmt, export_file(source, "students", fmt))
    assert outcome.status is Status.COMPLETED, outcome.errors[:3]
    assert _rows(target, "students", fmt) == _rows(source, "students", fmt)

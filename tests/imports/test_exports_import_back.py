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
from ferry.datasets.spec import Field, Kind
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.imports import detect
from ferry.imports.tabular import EntityRows
from ferry.merge import MergeOptions, Status, run_import
from ferry.tabular.base import ReadLimits
from ferry.tabular.cells import to_millisecond
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
    batches = EntityRows(
        SCHOOL.entity(entity), rows, {}, 500, getattr(reader, "typed_cells", False)
    )
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
    """An instant to the millisecond and a float to 15 significant digits: as much as
    Excel keeps (xlsxwriter writes numbers with 16)."""
    if isinstance(value, float):
        return float(f"{value:.15g}")
    if isinstance(value, str) and len(value) >= 20 and value[10] == "T" and value.endswith("Z"):
        return to_millisecond(dt.datetime.fromisoformat(value.replace("Z", "+00:00"))).isoformat()
    return value


def _rows(engine: Engine, entity: str, fmt: str = "json") -> list[tuple[tuple[str, str], ...]]:
    """The entity's rows as its json export writes them, in a comparable order (xlsx:
    instants to the millisecond and floats to 15 digits, Excel's precision)."""
    doc = orjson.loads(export_file(engine, entity, "json"))
    fix = _ms if fmt == "xlsx" else (lambda v: v)
    # A csv or xlsx cell holds "" and null alike: by the empty-cell rule a nullable text
    # field's null comes back as "" (the one loss of the tabular formats; the bundle
    # formats keep both).
    blank = {
        f.name
        for f in SCHOOL.entity(entity).fields
        if f.nullable and f.kind is Kind.STR and fmt in ("csv", "xlsx")
    }

    def value(k: str, v: object) -> object:
        return "" if k in blank and v is None else fix(v)

    return sorted(tuple(sorted((k, repr(value(k, v))) for k, v in r.items())) for r in doc["rows"])


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_every_entity_exported_imports_into_an_empty_database_as_the_same_rows(
    demo: Engine, backend: str, tmp_path: Path, fmt: str
) -> None:
    # Empty text beside null in nullable text fields: json keeps both apart (csv and
    # xlsx cells cannot, see _rows).
    with demo.begin() as conn:
        for table, column in [("grades", "comment"), ("attendance", "note")]:
            conn.execute(sa.text(f"UPDATE {table} SET {column} = NULL"))
            first = f"(SELECT min(id) FROM {table})"
            conn.execute(sa.text(f"UPDATE {table} SET {column} = '' WHERE id = {first}"))
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
                "year_level": draw(st.integers(0, 100)),  # the spec's range
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


_INSTANT = st.datetimes(
    min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2090, 1, 1), timezones=st.just(dt.UTC)
)
_DATE = st.dates(dt.date(1900, 3, 1), dt.date(2100, 1, 1)).map(str)
# Within Excel's range (±9.99999999999999e307): xlsxwriter writes 16 significant digits,
# so a float nearer the double's limit than that comes back from xlsx as an infinity.
_FLOAT = st.floats(min_value=-9.99e307, max_value=9.99e307, allow_nan=False, width=64)


def _value(draw: st.DrawFn, entity: str, f: Field) -> object:
    """A value for field `f`, within its column's length in the database."""
    column = SCHOOL.entity(entity).model.__table__.c[f.column_name]
    # Numbers anywhere in the dataset spec's range (issue 21: numbers have bounds).
    if f.kind is Kind.INT:
        low, high = f.range or (-(2**31), 2**31 - 1)
        value: object = draw(st.integers(int(low), int(high)))
    elif f.kind is Kind.FLOAT and f.range is not None:
        # 12 significant digits: the row comparison rounds to 15 (Excel's precision), and
        # a value with more digits than that could round differently after xlsx's 16.
        floats = st.floats(float(f.range[0]), float(f.range[1]), allow_nan=False)
        value = draw(floats.map(lambda x: float(f"{x:.12g}")))
    elif f.kind is Kind.FLOAT:
        value = draw(_FLOAT)
    elif f.kind is Kind.DATE:
        value = draw(_DATE)
    elif f.kind is Kind.TIMESTAMP:
        value = draw(_INSTANT)
    else:
        length = getattr(column.type, "length", None) or 40
        value = draw((_TRICKY | _TEXT).filter(lambda t: len(t) <= length))
    return draw(st.none()) if f.nullable and draw(st.booleans()) else value


@st.composite
def _school(draw: st.DrawFn) -> dict[str, list[dict[str, object]]]:
    """A few records of every entity, linked: every natural key unique, every reference to
    a record drawn before it, every other field anything its column holds."""
    out: dict[str, list[dict[str, object]]] = {}
    keys = {"course_code", "student_id", "assessment", "date", "category", "title", "semester"}

    def fields(entity: str, i: int) -> dict[str, object]:
        row: dict[str, object] = {}
        for f in SCHOOL.entity(entity).fields:
            if f.name in keys and f.name in SCHOOL.entity(entity).natural_key:
                row[f.name] = (
                    str(dt.date(2026, 1, 1) + dt.timedelta(days=i)) if f.name == "date" else f"K{i}"
                )
            else:
                row[f.name] = _value(draw, entity, f)
        return row

    courses = [
        {**fields("courses", i), "course_code": f"C{i}", "prerequisite_code": None}
        for i in range(draw(st.integers(1, 3)))
    ]
    for i, c in enumerate(courses[1:], 1):
        c["prerequisite_code"] = draw(st.none() | st.just(f"C{i - 1}"))
    students = [
        {**fields("students", i), "student_id": f"S{i}", "mentor_student_id": None}
        for i in range(draw(st.integers(1, 4)))
    ]
    for s in students:
        s["mentor_student_id"] = draw(
            st.none() | st.sampled_from([t["student_id"] for t in students])
        )
    pairs = [(s["student_id"], c["course_code"]) for s in students for c in courses]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=4, unique=True))
    enrollments = [
        {**fields("enrollments", i), "student_id": s, "course_code": c}
        for i, (s, c) in enumerate(chosen)
    ]
    out = {"courses": courses, "students": students, "enrollments": enrollments}
    for entity in ("grades", "attendance", "daily_performance"):
        out[entity] = [
            {**fields(entity, i), "student_id": s, "course_code": c}
            for i, (s, c) in enumerate(draw(st.lists(st.sampled_from(chosen), max_size=3)))
        ]
    out["highlights"] = [
        {**fields("highlights", i), "student_id": draw(st.sampled_from(students))["student_id"]}
        for i in range(draw(st.integers(0, 3)))
    ]
    return out


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(school=_school(), fmt=st.sampled_from(["csv", "xlsx", "json"]))
def test_generated_records_of_every_entity_survive_export_and_import(
    pair: tuple[Engine, Engine], school: dict[str, list[dict[str, object]]], fmt: str
) -> None:
    """Every entity type, generated rows (Greek, formulas, nulls, extreme numbers, dates,
    instants), exported in `fmt` and imported into an empty database, entity by entity
    in dependency order: the same rows."""
    source, target = pair
    for e in pair:
        with e.begin() as conn:
            for entity in reversed(SCHOOL.in_order()):
                conn.execute(sa.text(f"DELETE FROM {entity.model.__tablename__}"))
    for entity in SCHOOL.in_order():
        seeded = run_import(
            source,
            SCHOOL,
            [Batch(entity.name, school[entity.name])] if school[entity.name] else [],
            MergeOptions(),
            requested_by="tester",
            source_sha256="x",
            entity=entity.name,
        )
        assert seeded.status is Status.COMPLETED, (entity.name, seeded.errors[:3])
    for entity in SCHOOL.in_order():
        if not school[entity.name]:
            continue
        outcome = _import(target, entity.name, fmt, export_file(source, entity.name, fmt))
        assert outcome.status is Status.COMPLETED, (entity.name, outcome.errors[:3])
        assert _rows(target, entity.name, fmt) == _rows(source, entity.name, fmt), entity.name

"""The PostgreSQL bulk insert path (apply._bulk_insert): same data and undo log as the plain
INSERT, every constraint and index back as it was, and nothing left behind by a rollback.
BULK_MIN_ROWS is lowered so that the small demo bundle takes it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ferry.bundle.formats.base import Event
from ferry.datasets.school import SCHOOL
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.errors import Internal
from ferry.merge import Status, apply, undo_import
from ferry.merge.shape import Shape
from tests.conftest import fresh_database
from tests.merge.helpers import (
    bundle,
    checksum,
    comparable,
    edited,
    rebuild,
    records,
    run,
    scalar,
)

pytestmark = pytest.mark.postgres

TABLES = [e.table.name for e in SCHOOL.in_order()]


@pytest.fixture
def backend() -> str:
    """PostgreSQL only: SQLite has no bulk path."""
    return "postgres"


@pytest.fixture
def bulk(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every insert takes the bulk path; returns the entities that took it, in order."""
    taken: list[str] = []
    real = apply._bulk_insert

    def spy(conn: Connection, shape: Shape, insert: str, params: dict[str, Any]) -> None:
        taken.append(shape.name)
        real(conn, shape, insert, params)

    monkeypatch.setattr(apply, "BULK_MIN_ROWS", 1)
    monkeypatch.setattr(apply, "_bulk_insert", spy)
    return taken


@pytest.fixture
def plain_target(tmp_path: Path) -> Iterator[Engine]:
    """A second empty PostgreSQL database, for the plain path."""
    with fresh_database("postgres", tmp_path) as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        yield engine
        engine.dispose()


def schema(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Constraints, indexes and (RI) triggers of the dataset tables, as the catalog holds them."""
    queries = {
        "constraints": "SELECT conrelid::regclass::text, conname, contype, "
        "pg_get_constraintdef(oid), convalidated, condeferrable, condeferred "
        "FROM pg_constraint WHERE conrelid::regclass::text = ANY(:t)",
        "indexes": "SELECT indrelid::regclass::text, indexrelid::regclass::text, "
        "pg_get_indexdef(indexrelid), indisunique, indisprimary, indisvalid "
        "FROM pg_index WHERE indrelid::regclass::text = ANY(:t)",
        "triggers": "SELECT tgrelid::regclass::text, tgfoid::regproc::text, tgtype, tgenabled, "
        "(SELECT conname FROM pg_constraint c WHERE c.oid = tgconstraint) "
        "FROM pg_trigger WHERE tgrelid::regclass::text = ANY(:t)",
    }
    with engine.connect() as conn:
        return {
            what: sorted(tuple(r) for r in conn.execute(sa.text(sql), {"t": TABLES}))
            for what, sql in queries.items()
        }


def undo_log(engine: Engine, import_id: str) -> dict[str, tuple[list[Any], list[Any]]]:
    """Per entity, the id ranges an import created and (apart) their newest updated_at."""
    out: dict[str, tuple[list[Any], list[Any]]] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT entity, row_id, row_id_end, new_updated_at FROM import_changes "
                "WHERE import_id = :i AND action = 'created' ORDER BY entity, row_id"
            ),
            {"i": import_id},
        )
        for entity, start, end, newest in rows:
            ranges, times = out.setdefault(entity, ([], []))
            ranges.append((start, end))
            times.append(newest)
    return {k: (ranges, sorted(times)) for k, (ranges, times) in out.items()}


def spread_ids(engine: Engine, table: str) -> None:
    """Make `table`'s new ids non-contiguous (recorded as one range per row)."""
    with engine.begin() as conn:
        seq = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table})
        conn.exec_driver_sql(f"ALTER SEQUENCE {seq.scalar_one()} INCREMENT BY 3")


def test_bulk_import_matches_the_plain_path_and_restores_every_constraint(
    events: list[Event],
    target: Engine,
    plain_target: Engine,
    bulk: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalog = schema(target)
    assert catalog == schema(plain_target)
    for engine in (target, plain_target):
        spread_ids(engine, "highlights")  # exercises the gaps-and-islands recording
    fast = run(target, events)
    assert fast.status is Status.COMPLETED
    assert bulk == TABLES
    bulk.clear()
    monkeypatch.setattr(apply, "BULK_MIN_ROWS", 10**9)
    plain = run(plain_target, events)
    monkeypatch.setattr(apply, "BULK_MIN_ROWS", 1)
    assert bulk == []
    # Equal data. Which row gets which id is up to the resolve plans, which differ: the
    # rebuilt indexes leave the planner row counts the plain path does not have yet.
    assert comparable(bundle(target)) == comparable(bundle(plain_target))
    assert undo_log(target, fast.id) == undo_log(plain_target, plain.id)
    assert len(undo_log(target, fast.id)["highlights"][0]) > 1
    assert schema(target) == catalog
    # Re-importing creates nothing; one new record into a full table takes the plain path.
    assert run(target, events).status is Status.COMPLETED
    by = copy.deepcopy(records(events))
    by["grades"].append(dict(by["grades"][0], assessment="Extra credit"))
    assert run(target, rebuild(by)).status is Status.COMPLETED
    assert bulk == []


def test_dry_run_and_aborted_run_leave_data_and_constraints_unchanged(
    events: list[Event], target: Engine, bulk: list[str]
) -> None:
    catalog = schema(target)
    preview = run(target, events, dry_run=True)
    assert preview.status is Status.DRY_RUN
    assert bulk == TABLES
    assert all(scalar(target, f"SELECT count(*) FROM {t}") == 0 for t in TABLES)
    assert schema(target) == catalog
    bulk.clear()
    failed = run(target, edited(events, "attendance", 3, date="2026-02-30"))
    assert failed.status is Status.FAILED
    assert "attendance" in bulk
    assert all(scalar(target, f"SELECT count(*) FROM {t}") == 0 for t in TABLES)
    assert schema(target) == catalog


@pytest.mark.parametrize("min_rows", [1, 10**9], ids=["bulk", "plain"])
def test_a_violation_found_when_re_adding_a_foreign_key_fails_the_run(
    events: list[Event],
    target: Engine,
    monkeypatch: pytest.MonkeyPatch,
    min_rows: int,
) -> None:
    """A parent vanishing under the run (here: deleted just before the children's
    insert) is the same IntegrityError on both paths, and everything is rolled back."""
    by = records(events)
    run(target, rebuild({k: v for k, v in by.items() if k != "attendance"}))
    catalog, before = schema(target), checksum(target)
    real = apply.insert_new

    def vanish(conn: Connection, shape: Shape, *args: Any) -> None:
        if shape.name == "attendance":
            ref = f"r{shape.refs[0].index}"
            gone = f"(SELECT min({ref}) FROM {shape.resolved} WHERE st = 'create')"
            # Its other children first: no delete cascades (migration 0005).
            for child in ("grades", "daily_performance"):
                conn.exec_driver_sql(f"DELETE FROM {child} WHERE enrollment_ref = {gone}")
            conn.exec_driver_sql(f"DELETE FROM enrollments WHERE id = {gone}")
        real(conn, shape, *args)

    monkeypatch.setattr(apply, "BULK_MIN_ROWS", min_rows)
    monkeypatch.setattr(apply, "insert_new", vanish)
    with pytest.raises(Internal) as failed:
        run(target, rebuild({"attendance": by["attendance"]}))
    # Said in words, naming the constraint; the database's error is the cause (and logged).
    assert "constraint fk_attendance_enrollment_ref_enrollments" in failed.value.message
    assert "applying attendance" in failed.value.message
    err = failed.value.__cause__
    assert isinstance(err, sa.exc.IntegrityError)
    assert '"attendance" violates foreign key' in str(err)
    # Found by re-adding the foreign key (bulk) or by its trigger during the INSERT (plain).
    assert str(err.statement).startswith("ALTER TABLE") == (min_rows == 1)
    assert checksum(target) == before
    assert schema(target) == catalog


def test_undo_of_a_bulk_import(events: list[Event], target: Engine, bulk: list[str]) -> None:
    catalog = schema(target)
    outcome = run(target, events)
    assert bulk == TABLES
    undone = undo_import(target, SCHOOL, outcome.id)
    assert undone.status is Status.UNDONE
    assert all(scalar(target, f"SELECT count(*) FROM {t}") == 0 for t in TABLES)
    assert schema(target) == catalog
    # The emptied tables take the bulk path again, above the old ids.
    again = run(target, events)
    assert again.status is Status.COMPLETED
    assert bulk == TABLES * 2
    first, second = undo_log(target, outcome.id), undo_log(target, again.id)
    assert first.keys() == second.keys() == set(TABLES)
    assert all(second[e][0][0][0] > first[e][0][-1][1] for e in TABLES)


def test_a_bulk_load_leaves_the_table_analyzed(
    events: list[Event], target: Engine, bulk: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk path's rebuilt indexes set pg_class.reltuples to the new count: the rule
    that ANALYZEs a table an import outgrew reads what the statistics knew before the
    insert, or a bulk-loaded table was never analyzed (the kept semester counts, planned
    on no statistics, took 10 s of a 1M-record import)."""
    monkeypatch.setattr(apply, "ANALYZE_MIN_ROWS", 1)
    created = {SCHOOL.entity(n).table.name: len(r) for n, r in records(events).items() if r}
    assert run(target, events).status is Status.COMPLETED
    assert sorted(bulk) == sorted(SCHOOL.entity(n).name for n in records(events))
    with target.connect() as conn:
        analyzed = set(
            conn.execute(
                sa.text(
                    "SELECT DISTINCT c.relname FROM pg_statistic s JOIN pg_class c "
                    "ON c.oid = s.starelid WHERE c.relname = ANY(:t)"
                ),
                {"t": sorted(created)},
            ).scalars()
        )
    assert analyzed == set(created)

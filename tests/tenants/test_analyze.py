"""The ANALYZE rule of an import (`ferry.merge.apply._refresh_stats`, docs/tenants.md):
under row-level security a table whose statistics know of fewer rows than an import just
created is planned as nearly empty, so the import ANALYZEs it in its own transaction,
but only when it created at least ANALYZE_MIN_ROWS rows and more than the statistics
know of. Seen two ways: the ANALYZE statements the app role sends, and pg_class's
reltuples (-1: never analyzed). Autovacuum is off for these tables, so only the import
analyzes them."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from ferry.bundle.formats.base import Event
from ferry.datasets.school import SCHOOL
from ferry.db import tenant
from ferry.merge import Status
from ferry.merge.apply import ANALYZE_MIN_ROWS
from tests.merge.helpers import records, run
from tests.tenants.conftest import Tenancy

pytestmark = pytest.mark.postgres

TABLES = {e.table.name for e in SCHOOL.in_order()}


def stats(t: Tenancy) -> dict[str, float]:
    """reltuples of every dataset table (what the planner believes it holds)."""
    with t.platform.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT relname, reltuples FROM pg_class WHERE relname = ANY(:t)"),
            {"t": sorted(TABLES)},
        )
        return {str(name): float(n) for name, n in rows}


def test_an_import_analyzes_a_table_only_when_it_outgrew_its_statistics(
    tenancy: Tenancy, source_events: list[Event]
) -> None:
    t = tenancy
    with t.platform.begin() as conn:
        for table in TABLES:
            conn.exec_driver_sql(f'ALTER TABLE "{table}" SET (autovacuum_enabled = false)')
    created = {SCHOOL.entity(n).table.name: len(r) for n, r in records(source_events).items()}
    big = {n for n, c in created.items() if c >= ANALYZE_MIN_ROWS}
    small = {n for n, c in created.items() if 0 < c < ANALYZE_MIN_ROWS}
    assert big and small, created  # both sides of the threshold, or the test shows nothing
    analyzed: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("ANALYZE "):
            name = statement.removeprefix("ANALYZE ").strip().strip('"')
            if name in TABLES:
                analyzed.append(name)

    sa.event.listen(t.app, "before_cursor_execute", seen)
    try:
        assert set(stats(t).values()) == {-1.0}  # never analyzed
        # 1. Never analyzed: the tables that got ANALYZE_MIN_ROWS rows or more are
        # analyzed (their statistics then know every row); the others are left alone.
        with tenant.acting_for(t.schools["north"]):
            assert run(t.app, source_events).status is Status.COMPLETED
        assert sorted(analyzed) == sorted(big)
        after = stats(t)
        assert {n: after[n] for n in big} == {n: float(created[n]) for n in big}
        assert {after[n] for n in small} == {-1.0}

        # 2. The statistics know of as many rows as south's import creates: no ANALYZE.
        analyzed.clear()
        with tenant.acting_for(t.schools["south"]):
            assert run(t.app, source_events).status is Status.COMPLETED
        assert analyzed == [] and stats(t) == after

        # 3. Statistics behind (as if taken when the table was small): an import that
        # creates more rows than they know of analyzes that table again, and only it.
        stale = sorted(big)[0]
        with t.platform.begin() as conn:
            conn.execute(
                sa.text("UPDATE pg_class SET reltuples = :n WHERE relname = :t"),
                {"n": created[stale] - 1, "t": stale},
            )
        with tenant.acting_for(tenant.DEFAULT_SCHOOL_ID):
            assert run(t.app, source_events).status is Status.COMPLETED
        assert analyzed == [stale]
        assert stats(t)[stale] == 3 * created[stale]  # three schools' rows now
    finally:
        sa.event.remove(t.app, "before_cursor_execute", seen)

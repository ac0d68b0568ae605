"""Property: any sequence of imports (csv-like entity imports and bundles, every
strategy), undone newest first, returns every table to its starting checksum; an undo out
of order is refused and changes nothing, or leaves every later import's rows intact."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch, Event
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.errors import FailedPrecondition
from ferry.merge import Status, undo_import
from tests.conftest import migrated_database
from tests.merge.helpers import bundle, checksum, rebuild, records, run

SEMESTERS = ["2025-fall", "2026-spring", "2026-fall"]
STRATEGIES = ["update", "skip", "update_only", "replace"]


def _variant(events: list[Event], semester: str, seed: int) -> list[Event]:
    """The bundle with a few records changed and a few left out (seeded)."""
    by = copy.deepcopy(records(events))
    for i, g in enumerate(by.get("grades", [])):
        if (i + seed) % 7 == 0:
            g["score"] = float(g["score"]) + 1.25
    by["attendance"] = [a for i, a in enumerate(by.get("attendance", [])) if (i + seed) % 11]
    if by.get("courses"):
        by["courses"][seed % len(by["courses"])]["title"] = f"Renamed {seed}"
    return rebuild(by, semester)


Step = tuple[str, str, str, int]  # (kind, semester, strategy, seed)
STEPS = st.tuples(
    st.sampled_from(["bundle", "variant", "students"]),
    st.sampled_from(SEMESTERS),
    st.sampled_from(STRATEGIES),
    st.integers(0, 50),
)


def _events(source: dict[str, list[Event]], step: Step) -> tuple[list[Event], dict[str, Any]]:
    kind, semester, strategy, seed = step
    if kind == "students":  # what a students csv gives: one entity, no semester
        rows = records(source[semester])["students"][seed % 5 :: 3]
        return [Batch("students", rows)], {"entity": "students", "strategy": "update"}
    events = source[semester] if kind == "bundle" else _variant(source[semester], semester, seed)
    return events, {"strategy": strategy}


def _created_rows_present(engine: Engine, import_id: str) -> bool:
    """Every row the import recorded as created still exists."""
    with engine.connect() as conn:
        ranges = conn.execute(
            sa.text(
                "SELECT entity, row_id, row_id_end FROM import_changes "
                "WHERE import_id = :i AND action = 'created'"
            ),
            {"i": import_id},
        ).all()
        for entity, a, b in ranges:
            table = SCHOOL.entity(entity).table.name
            held = conn.execute(
                sa.text(f"SELECT count(*) FROM {table} WHERE id BETWEEN :a AND :b"),
                {"a": a, "b": b},
            ).scalar_one()
            if held != b - a + 1:
                return False
    return True


@pytest.fixture(scope="module")
def demo_bundles(source_urls: Callable[[str], str]) -> dict[str, dict[str, list[Event]]]:
    out = {}
    for backend in ("sqlite", "postgres"):
        try:
            engine = make_engine(source_urls(backend))
        except pytest.skip.Exception:
            continue
        out[backend] = {s: bundle(engine, s) for s in SEMESTERS}
        engine.dispose()
    return out


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEPS, min_size=1, max_size=5), out_of_order=st.integers(0, 10))
def test_undo_newest_first_restores_every_starting_checksum(
    backend: str,
    demo_bundles: dict[str, dict[str, list[Event]]],
    steps: list[Step],
    out_of_order: int,
) -> None:
    source = demo_bundles[backend]
    with tempfile.TemporaryDirectory() as folder, migrated_database(backend, Path(folder)) as url:
        target = make_engine(url)
        try:
            states, ids = [checksum(target)], []
            for step in steps:
                events, options = _events(source, step)
                outcome = run(target, events, **options)
                if outcome.status is not Status.COMPLETED:
                    continue  # update_only of unknown records etc.: nothing changed
                ids.append(outcome.id)
                states.append(checksum(target))
            # An undo out of order: refused and nothing changes, or later work intact.
            exact = True
            if len(ids) > 1:
                victim = out_of_order % (len(ids) - 1)
                before = checksum(target)
                try:
                    undo_import(target, SCHOOL, ids[victim])
                except FailedPrecondition:
                    assert checksum(target) == before
                else:
                    assert all(_created_rows_present(target, i) for i in ids[victim + 1 :])
                    # The earlier states no longer apply; the rest still undo newest first.
                    ids.pop(victim)
                    exact = False
            if not exact:
                for i in reversed(ids):
                    undo_import(target, SCHOOL, i)
                return
            for i in reversed(range(len(ids))):
                undo_import(target, SCHOOL, ids[i])
                assert checksum(target) == states[i], f"after undoing step {i}"
        finally:
            target.dispose()

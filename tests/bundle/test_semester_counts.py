"""ListSemesters' counts are kept with the data (scope_counts, rewritten by every import,
undo and restore in its own transaction). Property: after any sequence of imports
(bundles, edited bundles under every strategy, students marked deleted and back, courses
deleted) and undos (newest first, out of order, forced), every semester's counts equal
what plain SQL counts in the tables, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch, Event
from ferry.bundle.semesters import list_semesters, recount
from ferry.datasets.school import SCHOOL
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from ferry.errors import FailedPrecondition
from ferry.merge import Status, undo_import
from tests.conftest import BACKENDS, fresh_database, migrated_database
from tests.merge.helpers import bundle, rebuild, records, run

SEMESTERS = ["2025-fall", "2026-spring", "2026-fall"]
ENTITIES = ("courses", "students", "enrollments")
CHILDREN = ("grades", "attendance", "daily_performance")

# Plain SQL, written out here rather than derived from the dataset spec: live courses of
# the semester; live enrollments of a live student in one of them; those students.
COURSES = "SELECT semester, count(*) FROM courses WHERE deleted_at IS NULL GROUP BY semester"
ENROLLED = (
    "SELECT c.semester, count(*), count(DISTINCT e.student_ref) FROM enrollments e "
    "JOIN courses c ON c.id = e.course_ref JOIN students s ON s.id = e.student_ref "
    "WHERE e.deleted_at IS NULL AND c.deleted_at IS NULL AND s.deleted_at IS NULL "
    "GROUP BY c.semester"
)


def plain_counts(engine: Engine) -> dict[str, dict[str, int]]:
    with engine.connect() as conn:
        courses = {str(s): int(n) for s, n in conn.execute(sa.text(COURSES))}
        enrolled = {str(s): (int(e), int(n)) for s, e, n in conn.execute(sa.text(ENROLLED))}
    out = {}
    for semester, n in courses.items():
        e, s = enrolled.get(semester, (0, 0))
        out[semester] = {"courses": n, "students": s, "enrollments": e}
    return out


def kept_counts(engine: Engine) -> dict[str, dict[str, int]]:
    return {s.name: s.counts for s in list_semesters(engine, SCHOOL, ENTITIES)}


@pytest.fixture(scope="module", params=BACKENDS)
def source(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[str, list[Event]]]]:
    """(backend, semester -> its demo bundle, soft-deleted records included)."""
    with tempfile.TemporaryDirectory() as folder, fresh_database(
        str(request.param), Path(folder)
    ) as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        seed(engine, Scale.SMALL, seed=7)
        # The seed keeps the counts too, in the transaction that writes the rows.
        assert kept_counts(engine) == plain_counts(engine) != {}
        bundles = {s: bundle(engine, s) for s in SEMESTERS}
        engine.dispose()
        yield str(request.param), bundles


def _edited(events: list[Event], semester: str, seed: int) -> list[Event]:
    """The bundle with a few enrollments left out (with what hangs from them), a course
    renamed and one marked deleted: a replace soft-deletes what it lacks."""
    by = copy.deepcopy(records(events))
    dropped = {
        (e["student_id"], e["course_code"])
        for i, e in enumerate(by.get("enrollments", []))
        if (i + seed) % 5 == 0
    }
    for name in ("enrollments", *CHILDREN):
        kept = by.get(name, [])
        by[name] = [r for r in kept if (r["student_id"], r["course_code"]) not in dropped]
    if by.get("courses"):
        course = by["courses"][seed % len(by["courses"])]
        course["title"] = f"Renamed {seed}"
        if seed % 3 == 0:
            course["deleted_at"] = course["updated_at"]
    return rebuild(by, semester)


def _students(events: list[Event], seed: int) -> list[Event]:
    """A students import (no semester): some marked deleted, some brought back."""
    rows = copy.deepcopy(records(events)["students"][seed % 5 :: 3])
    for i, r in enumerate(rows):
        r["deleted_at"] = r["updated_at"] if (i + seed) % 2 else None
    return [Batch("students", rows)]


Step = tuple[str, str, str, int]  # (kind, semester, strategy, seed)
STEPS = st.tuples(
    st.sampled_from(["bundle", "edited", "students", "undo"]),
    st.sampled_from(SEMESTERS),
    st.sampled_from(["update", "skip", "replace"]),
    st.integers(0, 50),
)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEPS, min_size=2, max_size=6))
def test_counts_stay_exact_through_imports_and_undos(
    source: tuple[str, dict[str, list[Event]]], steps: list[Step]
) -> None:
    backend, bundles = source
    with tempfile.TemporaryDirectory() as folder, migrated_database(backend, Path(folder)) as url:
        target = make_engine(url)
        try:
            done: list[str] = []
            for kind, semester, strategy, seed_ in steps:
                if kind == "undo":
                    if done:
                        victim = done[seed_ % len(done)]
                        try:
                            undo_import(target, SCHOOL, victim, force=seed_ % 2 == 0)
                        except FailedPrecondition:
                            pass  # refused: nothing changed
                        else:
                            done.remove(victim)
                else:
                    options: dict[str, Any] = {"strategy": strategy}
                    if kind == "students":
                        events = _students(bundles[semester], seed_)
                        options = {"entity": "students", "strategy": "update"}
                    elif kind == "edited":
                        events = _edited(bundles[semester], semester, seed_)
                    else:
                        events = bundles[semester]
                    outcome = run(target, events, **options)
                    if outcome.status is Status.COMPLETED:
                        done.append(outcome.id)
                assert kept_counts(target) == plain_counts(target), (kind, semester, strategy)
            for i in reversed(done):
                try:
                    undo_import(target, SCHOOL, i, force=True)
                except FailedPrecondition:
                    continue
                assert kept_counts(target) == plain_counts(target)
        finally:
            target.dispose()


def test_recount_of_everything_matches_and_drops_gone_semesters(
    source: tuple[str, dict[str, list[Event]]],
) -> None:
    """A full recount equals plain SQL; a semester whose courses are all gone is no
    longer listed."""
    backend, bundles = source
    with tempfile.TemporaryDirectory() as folder, migrated_database(backend, Path(folder)) as url:
        target = make_engine(url)
        try:
            for semester in SEMESTERS:
                assert run(target, bundles[semester], strategy="update").status is Status.COMPLETED
            with target.begin() as conn:
                conn.execute(sa.text("DELETE FROM scope_counts"))
                recount(conn, SCHOOL, None)
            assert kept_counts(target) == plain_counts(target)
            assert set(kept_counts(target)) == set(SEMESTERS)
            with target.begin() as conn:
                conn.execute(
                    sa.text("UPDATE courses SET deleted_at = updated_at WHERE semester = :s"),
                    {"s": "2025-fall"},
                )
                recount(conn, SCHOOL, ["2025-fall"])
            assert "2025-fall" not in kept_counts(target)
            assert kept_counts(target) == plain_counts(target)
        finally:
            target.dispose()

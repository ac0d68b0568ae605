"""The merge over random sequences of imports and undos (issue 21): semester bundles with
every strategy (some edited, some lacking a student), partial csvs of grades and
students, delta bundles (a grade changed or deleted), and undos of the newest import,
on both backends. After each import the fields it did not carry are unchanged and
nothing outside its scope changed; undoing the newest import gives back the state
before it; undoing everything newest-first gives back the starting checksums. The
oracle is plain SQL snapshots."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event, Header
from ferry.datasets.school import SCHOOL
from ferry.merge import Status, undo_import
from tests.merge.helpers import bundle, checksum, rebuild, records, run
from tests.merge.test_partial import _csv_events

SEMESTERS = ["2025-fall", "2026-spring", "2026-fall"]
STRATEGIES = ["update", "skip", "update_only", "replace"]

# Rows of each semester-scoped table with the semester they belong to (plain SQL).
_BY_SEMESTER = {
    "courses": "SELECT t.*, t.semester AS sem_ FROM courses t",
    "enrollments": "SELECT t.*, c.semester AS sem_ FROM enrollments t "
    "JOIN courses c ON c.id = t.course_ref",
    "highlights": "SELECT t.*, t.semester AS sem_ FROM highlights t",
    **{
        name: f"SELECT t.*, c.semester AS sem_ FROM {name} t "
        "JOIN enrollments e ON e.id = t.enrollment_ref JOIN courses c ON c.id = e.course_ref"
        for name in ("grades", "attendance", "daily_performance")
    },
}


def _outside(engine: Engine, semester: str) -> str:
    """A hash of every scoped row of the other semesters."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for name, sql in _BY_SEMESTER.items():
            digest.update(name.encode())
            rows = conn.execute(
                sa.text(f"SELECT * FROM ({sql}) x WHERE x.sem_ <> :s ORDER BY x.id"),
                {"s": semester},
            )
            for row in rows:
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def _rows(engine: Engine, table: str) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        return {
            r["id"]: dict(r) for r in conn.execute(sa.text(f"SELECT * FROM {table}")).mappings()
        }


@functools.cache
def _source_records(url: str, semester: str) -> dict[str, list[dict[str, Any]]]:
    from ferry.db.engine import make_engine

    engine = make_engine(url)
    try:
        return records(bundle(engine, semester))
    finally:
        engine.dispose()


BUNDLE_STEP = st.tuples(
    st.just("bundle"),
    st.sampled_from(SEMESTERS),
    st.sampled_from(STRATEGIES),
    st.integers(0, 30),  # which grade gets a new score
    st.booleans(),  # leave one student (and all their records) out
)
CSV_STEP = st.tuples(
    st.just("csv"),
    st.sampled_from(["grades", "students"]),
    st.sampled_from(SEMESTERS),
    st.integers(0, 30),  # which row changes
    st.sets(st.integers(0, 5), max_size=4),  # which optional columns it carries
)
DELTA_STEP = st.tuples(
    st.just("delta"),
    st.sampled_from(SEMESTERS),
    st.integers(0, 30),  # which grade changed
    st.booleans(),  # ... or was deleted
)
STEPS = st.lists(
    st.one_of(BUNDLE_STEP, CSV_STEP, DELTA_STEP, st.just(("undo",))), min_size=2, max_size=6
)
OPTIONAL = {
    "grades": ["score", "max_score", "weight", "graded_on", "comment", "deleted_at"],
    "students": ["first_name", "last_name", "email", "date_of_birth", "year_level", "status"],
}


def _bundle_events(recs: dict[str, list[dict[str, Any]]], step: tuple[Any, ...]) -> list[Event]:
    _, semester, _, grade, drop = step
    by = copy.deepcopy(recs)
    if by.get("grades"):
        g = by["grades"][grade % len(by["grades"])]
        g["score"] = float(g["score"]) / 2 + 0.25
    if drop and by.get("students"):
        gone = by["students"][0]["student_id"]
        by = {k: [r for r in v if r.get("student_id") != gone] for k, v in by.items()}
    return rebuild(by, semester)


def _delta(recs: dict[str, list[dict[str, Any]]], step: tuple[Any, ...]) -> list[Event]:
    """A delta bundle of one grade changed (or deleted) since the start of the term."""
    _, semester, grade, deleted = step
    g = copy.deepcopy(recs["grades"][grade % len(recs["grades"])])
    if deleted:
        g["deleted_at"] = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    else:
        g["score"] = float(g["score"]) / 2 + 0.75
    events = rebuild({"grades": [g]}, semester)
    head = events[0]
    assert isinstance(head, Header)
    since = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
    head.metadata.updated_since.FromDatetime(since)
    events[0] = Header(head.metadata, since)
    return events


def _csv(
    recs: dict[str, list[dict[str, Any]]], step: tuple[Any, ...]
) -> tuple[list[Event], set[str]]:
    _, entity, _, row, chosen = step
    key = list(SCHOOL.entity(entity).natural_key)
    optional = OPTIONAL[entity]
    columns = key + [optional[i] for i in sorted(chosen)]
    rows = [dict(r) for r in recs[entity]]
    target = rows[row % len(rows)]
    if "score" in columns:
        target["score"] = 1.5
    if "email" in columns:
        target["email"] = "changed@example.org"
    return _csv_events(entity, columns, [{k: r[k] for k in columns} for r in rows]), set(columns)


def test_random_imports_and_undos_keep_their_promises(
    source: Engine, target: Engine, backend: str
) -> None:
    url = source.url.render_as_string(hide_password=False)
    for semester in SEMESTERS:
        assert run(target, bundle(source, semester)).status is Status.COMPLETED
    start = checksum(target)

    @settings(
        max_examples=6,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(steps=STEPS)
    def check(steps: list[tuple[Any, ...]]) -> None:
        done: list[tuple[str, dict[str, str]]] = []  # (import id, state before it)
        try:
            for step in steps:
                if step[0] == "undo":
                    if done:
                        iid, before = done.pop()
                        undo_import(target, SCHOOL, iid)
                        assert checksum(target) == before, "undo gives back the state before"
                    continue
                before = checksum(target)
                recs = _source_records(url, step[2] if step[0] == "csv" else step[1])
                if step[0] == "delta":
                    outside = _outside(target, step[1])
                    out = run(target, _delta(recs, step))
                    assert out.status is Status.COMPLETED, out.errors[:3]
                    assert _outside(target, step[1]) == outside, "outside the semester"
                    changed = {k for k, v in checksum(target).items() if before[k] != v}
                    assert changed <= {"grades"}, changed
                elif step[0] == "bundle":
                    semester, strategy = step[1], step[2]
                    outside = _outside(target, semester)
                    events = _bundle_events(recs, step)
                    carried = {r["student_id"] for r in records(events).get("students", [])}
                    students = _rows(target, "students")
                    out = run(target, events, strategy=strategy)
                    assert out.status is Status.COMPLETED, out.errors[:3]
                    assert _outside(target, semester) == outside, "outside the semester"
                    # Students are shared: one the bundle lacks is never touched.
                    now = _rows(target, "students")
                    for rid, row in students.items():
                        if row["student_id"] not in carried:
                            assert now[rid] == row, row["student_id"]
                else:
                    entity = step[1]
                    table = SCHOOL.entity(entity).table.name
                    rows_before = _rows(target, table)
                    events, carried = _csv(recs, step)
                    out = run(target, events, entity=entity)
                    assert out.status is Status.COMPLETED, out.errors[:3]
                    untouched = set(rows_before[next(iter(rows_before))]) - carried - {"updated_at"}
                    after = _rows(target, table)
                    for rid, row in rows_before.items():
                        for col in untouched:
                            assert after[rid][col] == row[col], (entity, rid, col)
                    others = {k: v for k, v in before.items() if k != entity}
                    now = checksum(target)
                    assert {k: now[k] for k in others} == others, "other entities unchanged"
                done.append((out.id, before))
        finally:
            for iid, _ in reversed(done):
                undo_import(target, SCHOOL, iid)
        assert checksum(target) == start, "undoing everything newest-first"

    check()
